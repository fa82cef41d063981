"""bindlib.book.placement: text positions give the slot away, picture patches do not."""
from bindlib.book import placement
from bindlib.vision.encoders import RENDER_PROFILES
from bindlib.core.task import TaskConfig, sample_batch


def test_text_position_is_the_slot_and_a_patch_is_not():
    task = TaskConfig()
    batch = sample_batch(task, 300, seed=1, split="id")
    slots, positions = placement.text_places(batch)
    assert (positions[slots == 0] <= 2).all() and set(positions[slots == 2]) == {5, 6}
    text_acc, _ = placement.position_guess_accuracy(slots, positions)
    cfg = RENDER_PROFILES["cpu"]
    img_slots, patches = placement.image_places(batch, cfg, 16, seed=1)
    img_acc, base = placement.position_guess_accuracy(img_slots, patches)
    assert text_acc == 1.0 and img_acc < base + 0.15
    rows = placement.share_rows(img_slots, patches, 49, 8, "patch")
    assert abs(sum(r["share"] for r in rows if r["slot"] == 1) - 1.0) < 1e-9
