"""Hand-written facts the chat and instruction rows are assembled from.

Each topic carries several short, self-contained sentences so that answers can
be built from different subsets (rows about one topic then differ enough not to
look like near-duplicates to a curation step). Eval-only topics have no facts:
the instruction-following eval only needs prompts, and keeping its topics apart
from the training topics keeps the eval held out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    subject: str  # noun phrase usable after "Explain" / "Tell me about"
    kind: str  # "concept" (what is X) or "advice" (how to X)
    keywords: tuple[str, ...]  # words that occur in `facts`, used for keyword constraints
    facts: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic("the water cycle", "concept", ("evaporation", "clouds", "rain"), (
        "Water moves between the ground, the air and the sea in a loop called the water cycle.",
        "The sun heats lakes and oceans, and evaporation turns some of that water into vapor.",
        "As the vapor rises it cools and condenses into tiny droplets that form clouds.",
        "When the droplets grow heavy they fall back as rain, snow or hail.",
        "Rivers and groundwater carry the fallen water back toward the sea.",
        "Plants also release water vapor through their leaves, which adds to the cycle.",
    )),
    Topic("photosynthesis", "concept", ("sunlight", "oxygen", "leaves"), (
        "Photosynthesis is how plants turn light into chemical energy.",
        "Leaves capture sunlight with a green pigment called chlorophyll.",
        "The plant combines carbon dioxide from the air with water from its roots.",
        "The result is sugar, which the plant uses to grow, and oxygen, which it releases.",
        "Most of the oxygen we breathe was produced by plants and algae this way.",
        "Without photosynthesis, food chains on land and in the sea would collapse.",
    )),
    Topic("how vaccines work", "concept", ("immune", "antibodies", "protection"), (
        "A vaccine trains the immune system to recognize a germ before a real infection.",
        "It contains a harmless piece or weakened form of the germ.",
        "The body responds by making antibodies and memory cells.",
        "If the real germ appears later, those memory cells react quickly.",
        "This fast response usually prevents serious illness and gives lasting protection.",
        "When many people are vaccinated, diseases spread less, which also shields others.",
    )),
    Topic("compound interest", "concept", ("interest", "savings", "time"), (
        "Compound interest means you earn interest on your interest as well as on your deposit.",
        "Each period the interest is added to the balance, so the next payment is a bit larger.",
        "Over long stretches of time the growth speeds up noticeably.",
        "Starting to put money into savings early matters more than the exact amount.",
        "The same effect works against you on debts such as credit cards.",
        "A rough rule says money doubles in about 72 divided by the yearly rate in years.",
    )),
    Topic("the difference between weather and climate", "concept", ("weather", "climate", "average"), (
        "Weather is what the air is doing right now or over the next few days.",
        "Climate is the average pattern of weather in a place over many years.",
        "A cold week in summer is weather, while a trend of warmer summers is climate.",
        "Meteorologists forecast weather, and climate scientists study long records.",
        "You pick a jacket based on the weather and a house design based on the climate.",
    )),
    Topic("how a computer stores data", "concept", ("bits", "memory", "disk"), (
        "A computer stores everything as bits, which are ones and zeros.",
        "Eight bits make a byte, enough to represent a single letter of text.",
        "Working memory holds data the processor is using right now and is cleared when power is off.",
        "A disk or solid state drive keeps files even when the machine is switched off.",
        "Programs load files from the disk into memory before they work on them.",
        "Larger files such as videos are compressed so they take fewer bits.",
    )),
    Topic("why the sky is blue", "concept", ("sunlight", "scattering", "blue"), (
        "Sunlight contains all the colors of the rainbow mixed together.",
        "When it passes through the air, tiny gas molecules scatter the light.",
        "Short blue wavelengths are scattered much more than long red ones.",
        "That scattered blue light reaches our eyes from every part of the sky.",
        "At sunset the light travels through more air, so reds and oranges dominate.",
    )),
    Topic("what a budget is", "concept", ("income", "expenses", "plan"), (
        "A budget is a plan for how you will use the money you earn.",
        "It lists your income next to your regular expenses such as rent and food.",
        "Writing it down shows where money leaks away on small purchases.",
        "A good plan sets aside some savings before spending on extras.",
        "Reviewing the budget each month helps you adjust when things change.",
    )),
    Topic("how the heart works", "concept", ("blood", "oxygen", "pump"), (
        "The heart is a muscle that acts as a pump for the whole body.",
        "Its right side sends blood to the lungs to pick up oxygen.",
        "The left side pushes that oxygen rich blood out to the organs.",
        "Valves inside the heart keep the blood flowing in one direction.",
        "A resting adult heart beats roughly sixty to a hundred times a minute.",
        "Regular exercise makes the heart stronger and more efficient.",
    )),
    Topic("recycling", "concept", ("waste", "materials", "energy"), (
        "Recycling turns used materials into new products instead of throwing them away.",
        "Paper, glass, metal and many plastics can be collected and processed.",
        "Making cans from recycled aluminum uses far less energy than mining new metal.",
        "Recycling reduces the waste that ends up in landfills.",
        "Rinsing containers and sorting them correctly keeps the process efficient.",
    )),
    Topic("what an algorithm is", "concept", ("steps", "problem", "computer"), (
        "An algorithm is a precise list of steps for solving a problem.",
        "A cooking recipe is an everyday example of the idea.",
        "Every computer program is built from algorithms.",
        "Good algorithms give the right answer and finish quickly.",
        "Sorting a list of names and finding the shortest route are classic examples.",
    )),
    Topic("the moon's phases", "concept", ("moon", "sunlight", "orbit"), (
        "The moon does not make its own light; it reflects sunlight.",
        "As the moon moves along its orbit, we see different parts of its lit half.",
        "At new moon the lit side faces away from us, so the moon looks dark.",
        "At full moon the whole lit side faces the earth.",
        "A full cycle of phases takes about twenty nine and a half days.",
    )),
    Topic("inflation", "concept", ("prices", "money", "rate"), (
        "Inflation is the general rise in prices over time.",
        "When prices go up, each unit of money buys a little less.",
        "A small, steady rate is considered normal in a growing economy.",
        "Very high inflation makes planning hard and eats into savings.",
        "Central banks often raise interest rates to slow it down.",
    )),
    Topic("how bees make honey", "concept", ("nectar", "hive", "flowers"), (
        "Bees collect sweet nectar from flowers with their long tongues.",
        "Back at the hive they pass the nectar from bee to bee, adding enzymes.",
        "They store it in wax cells and fan it with their wings to dry it out.",
        "Once thick enough, the cell is sealed with a wax cap.",
        "The honey feeds the colony through the winter when flowers are scarce.",
    )),
    Topic("the role of sleep", "concept", ("sleep", "memory", "body"), (
        "Sleep gives the body time to repair muscles and tissues.",
        "During deep sleep the brain sorts and stores memories from the day.",
        "Most adults need seven to nine hours each night.",
        "Too little sleep hurts mood, focus and the immune system.",
        "A regular schedule helps the body know when to feel tired.",
    )),
    Topic("how to start running", "advice", ("walk", "shoes", "pace"), (
        "Begin with short sessions that mix running and walking.",
        "Pick comfortable shoes that fit well and support your feet.",
        "Keep an easy pace at which you could still hold a conversation.",
        "Add only a few minutes each week so your joints can adapt.",
        "Take rest days, because muscles get stronger while recovering.",
        "Warm up with a brisk walk and stretch gently afterwards.",
    )),
    Topic("how to sleep better", "advice", ("schedule", "screens", "caffeine"), (
        "Go to bed and get up at the same time every day, even on weekends.",
        "Keep the bedroom dark, quiet and slightly cool.",
        "Put screens away for half an hour before bed.",
        "Avoid caffeine in the afternoon and evening.",
        "A short wind down routine such as reading tells your body it is time to rest.",
        "If you cannot fall asleep, get up briefly and return when you feel drowsy.",
    )),
    Topic("how to study for an exam", "advice", ("notes", "practice", "breaks"), (
        "Start early and spread your study over several days.",
        "Turn your notes into questions and test yourself on them.",
        "Practice with old exam papers under timed conditions.",
        "Take short breaks every half hour to stay focused.",
        "Explain the hardest topics aloud as if teaching a friend.",
        "Sleep well the night before instead of cramming.",
    )),
    Topic("how to save money on groceries", "advice", ("list", "budget", "seasonal"), (
        "Plan your meals for the week and shop from a list.",
        "Set a weekly budget and keep track of what you spend.",
        "Buy seasonal fruit and vegetables, which are cheaper and fresher.",
        "Compare the price per kilogram rather than the package price.",
        "Cook larger batches and freeze leftovers for busy days.",
        "Avoid shopping when hungry, since it leads to impulse buys.",
    )),
    Topic("how to write a clear email", "advice", ("subject", "short", "request"), (
        "Write a subject line that says what the email is about.",
        "State your main point or request in the first two sentences.",
        "Keep paragraphs short so the message is easy to scan.",
        "Say exactly what you need and by when.",
        "Read it once more before sending to catch mistakes.",
    )),
    Topic("how to keep houseplants healthy", "advice", ("water", "light", "soil"), (
        "Check the soil with a finger and water only when the top layer is dry.",
        "Place each plant where it gets the amount of light it prefers.",
        "Use pots with drainage holes so roots do not sit in water.",
        "Wipe dust off the leaves so they can absorb light.",
        "Feed plants lightly during spring and summer when they grow most.",
    )),
    Topic("how to prepare for a job interview", "advice", ("research", "examples", "questions"), (
        "Research the company and the role before the day.",
        "Prepare short examples that show what you achieved in past work.",
        "Practice answering common questions out loud.",
        "Have two or three questions ready to ask the interviewer.",
        "Arrive a few minutes early and bring a copy of your resume.",
    )),
    Topic("how to reduce stress", "advice", ("breathing", "exercise", "friends"), (
        "Slow breathing for a minute or two calms the body quickly.",
        "Regular exercise, even a short walk, lowers stress hormones.",
        "Break big tasks into small steps and do the first one now.",
        "Talk to friends or family about what is bothering you.",
        "Limit news and social media if they leave you tense.",
        "Protect time for sleep, since tiredness makes everything feel harder.",
    )),
    Topic("how to learn a new language", "advice", ("practice", "words", "speaking"), (
        "Practice a little every day rather than a lot once a week.",
        "Learn the most common words first, since they cover most conversations.",
        "Start speaking early, even if you make mistakes.",
        "Listen to podcasts or songs in the language while commuting.",
        "Use flashcards with spaced repetition to remember vocabulary.",
    )),
    Topic("how to make a good cup of tea", "advice", ("water", "minutes", "leaves"), (
        "Use fresh, cold water and bring it to the right temperature.",
        "Black tea likes boiling water, while green tea prefers water just below boiling.",
        "Use about one teaspoon of leaves per cup.",
        "Steep black tea for three to five minutes and green tea for two to three.",
        "Remove the leaves when the time is up to avoid a bitter taste.",
    )),
    Topic("how to stay safe online", "advice", ("password", "updates", "links"), (
        "Use a different strong password for every account.",
        "A password manager remembers them so you do not have to.",
        "Turn on two factor login wherever it is offered.",
        "Install software updates promptly, since they fix security holes.",
        "Do not click links in unexpected messages asking for personal details.",
    )),
    Topic("how to organize a small kitchen", "advice", ("shelves", "space", "hooks"), (
        "Clear the counters and keep only daily tools within reach.",
        "Add shelves or racks to use vertical space on the walls.",
        "Hang pots, mugs and utensils on hooks.",
        "Store rarely used appliances in a cupboard or another room.",
        "Group items by task, such as baking or coffee, so they are easy to find.",
    )),
    Topic("how to give useful feedback", "advice", ("specific", "behavior", "suggestion"), (
        "Be specific about what you saw instead of speaking in general terms.",
        "Describe the behavior and its effect, not the person.",
        "Give feedback soon after the event while it is fresh.",
        "Offer a concrete suggestion for what to try next time.",
        "Mention what went well too, so the feedback feels balanced.",
    )),
    Topic("how to drink more water", "advice", ("bottle", "glass", "meals"), (
        "Carry a reusable bottle so water is always at hand.",
        "Drink a glass of water with each of your meals.",
        "Set a reminder on your phone every couple of hours.",
        "Add slices of lemon or cucumber if plain water feels boring.",
        "Notice the color of your urine; pale yellow means you are drinking enough.",
    )),
    Topic("how to start a vegetable garden", "advice", ("sun", "soil", "seeds"), (
        "Choose a spot that gets at least six hours of sun a day.",
        "Start small with one bed so the work stays manageable.",
        "Mix compost into the soil before planting.",
        "Begin with easy crops such as lettuce, beans and radishes grown from seeds.",
        "Water deeply but not too often, and pull weeds while they are small.",
    )),
)

# Only used as prompts of the held-out instruction-following eval.
EVAL_TOPICS: tuple[str, ...] = (
    "how volcanoes form", "the history of the bicycle", "why leaves change color in autumn",
    "how to care for a pet rabbit", "what a solar panel does", "how to plan a road trip",
    "the rules of chess", "how earthquakes are measured", "why people yawn",
    "how to paint a room", "what a library offers", "how tides work",
    "how to bake bread at home", "what makes a good neighbor", "how airplanes stay in the air",
    "how to write a thank you note", "the life cycle of a butterfly", "how to choose a laptop",
    "why cats purr", "how to fix a flat bicycle tire", "what museums are for",
    "how to train for a long hike", "how glaciers move", "how to keep a journal",
    "what a volunteer does", "how to host a small dinner", "why the ocean is salty",
    "how to learn to swim as an adult", "how rainbows appear", "how to pack light for travel",
)

EVAL_KEYWORDS: tuple[str, ...] = (
    "simple", "important", "example", "always", "first", "careful", "time", "people",
    "easy", "water", "best", "often",
)
