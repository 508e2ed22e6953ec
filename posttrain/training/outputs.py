"""Run a configured trainer and turn it into a StageResult: resume, NaN check, save."""

from __future__ import annotations

from typing import Any

from posttrain import preemption
from posttrain.errors import TrainingError
from posttrain.stagekit import StageContext, StageResult
from posttrain.training.callbacks import NonFiniteLossGuard, PreemptionCheckpoint
from posttrain.training.compact_scoring import score_labelled_tokens_only
from posttrain.training.progress import use_own_progress


def train_and_save(ctx: StageContext, trainer: Any, *, full_finetune: bool) -> StageResult:
    """Train (resuming from a checkpoint if the pipeline found one) and save the stage's model.

    A LoRA stage saves its adapter and extends the input lineage; a full
    fine-tune saves the whole model and starts a new lineage from it.
    """
    use_own_progress(trainer)
    score_labelled_tokens_only()
    guard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, NonFiniteLossGuard)), None)
    preemption_stop = next(
        (c for c in trainer.callback_handler.callbacks if isinstance(c, PreemptionCheckpoint)), None
    )
    with preemption.deferred():  # a SIGTERM/SIGUSR1 now ends the step, saves a checkpoint, then stops
        output = trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
        if preemption_stop is not None and preemption_stop.stopped_at is not None:
            raise preemption.Preempted(
                preemption.signal_name(preemption_stop.signal or 0),
                f"checkpoint of step {preemption_stop.stopped_at} saved in {ctx.checkpoints_dir}",
            )
    if guard is not None and guard.bad_step is not None:
        raise TrainingError(
            f"loss became {guard.bad_value} at step {guard.bad_step}; training stopped. "
            f"Checkpoints so far are in {ctx.checkpoints_dir}. Try a lower train.lr or check the data."
        )
    from posttrain.models.loading import without_router_logits

    model = without_router_logits(trainer.model)  # the trainer's aux-loss switch is not part of the model
    out_dir = ctx.model_dir if full_finetune else ctx.adapter_dir
    if trainer.args.world_size > 1:
        # Several processes: the trainer gathers sharded (FSDP, ZeRO-3) weights and writes on rank 0 only.
        trainer.save_model(str(out_dir))
    else:
        model.save_pretrained(out_dir, safe_serialization=True)
    if full_finetune:
        if trainer.is_world_process_zero():
            from posttrain.models.loading import save_tokenizer

            # the input's own tokenizer files when the tokenizer is unchanged: converters read what they read there
            save_tokenizer(ctx.tokenizer, ctx.model_dir, ctx.input.base,
                           trust_remote_code=ctx.model_spec.trust_remote_code)
        from posttrain.models.lineage import Lineage

        lineage = Lineage(base=str(ctx.model_dir))
    else:
        lineage = ctx.input.extended(ctx.adapter_dir)
    model.eval()
    # A QLoRA model in memory runs on 4-bit weights; the stage's model is its lineage on the
    # dequantized base, which the pipeline loads to evaluate what is exported.
    in_memory = None if getattr(model, "is_loaded_in_4bit", False) else model
    return StageResult(lineage=lineage, model=in_memory, metrics=dict(output.metrics))
