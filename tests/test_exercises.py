"""The chapter 1 exercise checker: it accepts a right solver, rejects a wrong one helpfully,
and its reference solver agrees with the task generator's."""
import pytest

from bindlib.book.exercises import check_answer, checker_prompts, prompt_strings, reference_answer, target_string
from bindlib.core.task import ASSOCIATION_ORDERS, QUERY_KINDS, TaskConfig, answer_from_tokens, sample_batch


def item_of_queried_color(prompt):
    """A correct solver written the way a student might: scan for the colour, then for its shape."""
    tokens = [t for t in prompt if t != "FILL"]
    color = tokens[-1]
    shape = tokens[tokens.index(color) + 1]
    end = tokens.index("CTX_END")
    return tokens[tokens.index(shape, end) + 1]


def kth_item(prompt):
    """A positional shortcut: the item on the association line of the queried colour's slot."""
    tokens = [t for t in prompt if t != "FILL"]
    slot = tokens[1:].index(tokens[-1]) // 2
    end = tokens.index("CTX_END")
    return tokens[end + 2 + 2 * slot]


def test_correct_solver_passes(capsys):
    check_answer(item_of_queried_color, n_prompts=200)
    assert capsys.readouterr().out.strip() == "All 200 prompts answered correctly."


def test_wrong_solver_fails_showing_expected_answer():
    first_wrong = next((p, e) for _, p, e in checker_prompts(200) if kth_item(p) != e)
    with pytest.raises(AssertionError) as info:
        check_answer(kth_item, n_prompts=200)
    message = str(info.value)
    assert repr(first_wrong[1]) in message
    assert " ".join(first_wrong[0]) in message
    assert "returned" in message


def test_crashing_solver_is_reported_as_assertion():
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        check_answer(lambda prompt: 1 / 0, n_prompts=5)


def test_checker_covers_every_n_order_and_offset():
    settings = [s for s, _, _ in checker_prompts(200)]
    assert {s["N"] for s in settings} == set(range(1, 17))
    assert {s["association order"] for s in settings} == set(ASSOCIATION_ORDERS)
    assert len({s["offset"] for s in settings}) > 1


@pytest.mark.parametrize("order", ASSOCIATION_ORDERS)
@pytest.mark.parametrize("offset", [0, 3])
def test_reference_answer_agrees_with_answer_from_tokens(order, offset):
    cfg = TaskConfig()
    names = cfg.vocab.names()
    batch = sample_batch(cfg, 300, seed=7, n=(1, 16), association_order=order, offset=offset)
    for i in range(len(batch)):
        ids = batch.tokens[i, : int(batch.query_pos[i]) + 1].tolist()
        assert reference_answer(prompt_strings(batch, i)) == names[answer_from_tokens(ids, cfg.vocab)]


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_reference_answer_handles_every_query_kind(kind):
    batch = sample_batch(TaskConfig(), 100, seed=5, n=(1, 16), query_kind=kind)
    for i in range(len(batch)):
        assert reference_answer(prompt_strings(batch, i)) == target_string(batch, i)
