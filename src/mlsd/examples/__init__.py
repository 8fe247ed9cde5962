"""Example projects that ``mlsd init --example NAME`` writes.

``forum-spam`` is the course's spam example: raw CSV and JSONL posts, their declared
schemas, a spec, and the manifest of the defects planted in the raw files.
``feed-ranking`` is its framing chapter's feed ranked by two objectives (quality
and engagement), with a spec declaring ``problem.objectives``. ``call-center``
is its labeling chapter's request routing: few labels, three annotators who
disagree, keyword rules, and a ``labels.policy`` that builds the target.
"""

from pathlib import Path

from ..errors import MlsdError
from ._call_center import write_example as write_call_center
from ._feed_ranking import write_example as write_feed_ranking
from ._forum_spam import generate_posts, write_example

EXAMPLES = {"forum-spam": write_example, "feed-ranking": write_feed_ranking,
            "call-center": write_call_center}


def write(name: str, folder: Path, **kwargs) -> dict:
    """Write example ``name`` into ``folder``; return its defect manifest."""
    try:
        fn = EXAMPLES[name]
    except KeyError:
        raise MlsdError(
            f"unknown example {name!r}; available: {', '.join(EXAMPLES)}"
        ) from None
    return fn(Path(folder), **kwargs)


__all__ = ["EXAMPLES", "generate_posts", "write", "write_example"]
