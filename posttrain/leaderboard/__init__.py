"""The leaderboard: score tables with deltas (table), their renderings (render), the cross-run SQLite
board (store)."""
