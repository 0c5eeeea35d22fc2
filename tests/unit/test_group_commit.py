"""GroupCommit: rounds of concurrent submissions, weighted bounds, pipelined stages, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from heartrate_serve.service import group_commit
from heartrate_serve.service.group_commit import GroupCommit, no_commit, no_prepare

# A failure guard only: every wait below is ended by an event the test sets, never by time.
GUARD_S = 5.0


@dataclass(frozen=True)
class Item:
    """A submitted item: a name and a weight (readings)."""

    name: str
    weight: int = 1


@dataclass
class Recorder:
    """Stages that record what they saw and can be held at an event per round."""

    prepared: list[list[str]] = field(default_factory=list)
    committed: list[list[str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    # Round (by its first item's name) -> event the stage waits on before returning.
    hold_prepare: dict[str, asyncio.Event] = field(default_factory=dict)
    hold_commit: dict[str, asyncio.Event] = field(default_factory=dict)
    # Name -> event set when a stage starts on a round holding that item.
    prepare_started: dict[str, asyncio.Event] = field(default_factory=dict)
    commit_started: dict[str, asyncio.Event] = field(default_factory=dict)

    async def prepare(self, items: Sequence[Item]) -> str:
        names = [it.name for it in items]
        self.prepared.append(names)
        self.log.append(f"prepare start {'+'.join(names)}")
        for n in names:
            self.prepare_started.setdefault(n, asyncio.Event()).set()
        gate = self.hold_prepare.get(names[0])
        if gate is not None:
            await gate.wait()
        self.log.append(f"prepare end {'+'.join(names)}")
        return "+".join(names)

    async def commit(self, items: Sequence[Item], prepared: str) -> list[str | BaseException]:
        names = [it.name for it in items]
        self.committed.append(names)
        self.log.append(f"commit start {prepared}")
        for n in names:
            self.commit_started.setdefault(n, asyncio.Event()).set()
        gate = self.hold_commit.get(names[0])
        if gate is not None:
            await gate.wait()
        self.log.append(f"commit end {prepared}")
        return [f"{n}@{prepared}" for n in names]

    def started(self, stage: str, name: str) -> asyncio.Event:
        """The event set when `stage` ("prepare"/"commit") starts on the round holding name."""
        table = self.prepare_started if stage == "prepare" else self.commit_started
        return table.setdefault(name, asyncio.Event())


def _weight(item: Item) -> int:
    return item.weight


def _group(
    rec: Recorder, max_weight: int = 100, max_rounds: int = 2
) -> GroupCommit[Item, str, str]:
    return GroupCommit(
        rec.prepare, rec.commit, weight=_weight, max_weight=max_weight, max_rounds=max_rounds
    )


async def _wait(event: asyncio.Event) -> None:
    """Waits for event (a guard turns a hang into a failure)."""
    async with asyncio.timeout(GUARD_S):
        await event.wait()


async def _yield(n: int = 20) -> None:
    """Lets every ready task run a few steps."""
    for _ in range(n):
        await asyncio.sleep(0)


def _submit_all(gc: GroupCommit[Item, str, str], items: Sequence[Item]) -> list[asyncio.Task[str]]:
    return [asyncio.create_task(gc.submit(it)) for it in items]


# --- grouping and weights -----------------------------------------------------------------------


async def test_single_submission_gets_its_commit_result() -> None:
    """A lone submission is prepared, committed and answered with its own result."""
    rec = Recorder()
    assert await _group(rec).submit(Item("a")) == "a@a"
    assert rec.prepared == [["a"]] and rec.committed == [["a"]]


async def test_concurrent_submissions_form_one_round() -> None:
    """Submissions made before the drainer runs are prepared and committed together."""
    rec = Recorder()
    gc = _group(rec)
    results = await asyncio.gather(*(gc.submit(Item(n)) for n in "abc"))
    assert results == ["a@a+b+c", "b@a+b+c", "c@a+b+c"]
    assert rec.prepared == [["a", "b", "c"]]
    assert rec.committed == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("weights", "max_weight", "rounds"),
    [
        ([1, 1, 1], 3, [[0, 1, 2]]),
        ([1, 1, 1], 2, [[0, 1], [2]]),
        ([1, 1, 1], 1, [[0], [1], [2]]),
        ([4, 4, 4], 10, [[0, 1], [2]]),
        ([5, 5], 10, [[0, 1]]),
        ([5, 6], 10, [[0], [1]]),
        ([25], 10, [[0]]),
        ([3, 25, 3], 10, [[0], [1], [2]]),
        ([25, 3, 3], 10, [[0], [1, 2]]),
        ([3, 3, 25], 10, [[0, 1], [2]]),
        ([10, 1], 10, [[0], [1]]),
        ([1, 9, 1], 10, [[0, 1], [2]]),
        ([0, 0, 10, 0], 10, [[0, 1, 2, 3]]),
        ([2] * 10, 5, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]),
    ],
)
async def test_rounds_are_bounded_by_weight_not_callers(
    weights: list[int], max_weight: int, rounds: list[list[int]]
) -> None:
    """Rounds take queued items in order up to max_weight readings; a heavier item goes alone."""
    rec = Recorder()
    gc = _group(rec, max_weight)
    items = [Item(str(i), w) for i, w in enumerate(weights)]
    await asyncio.gather(*(gc.submit(it) for it in items))
    assert rec.prepared == [[str(i) for i in r] for r in rounds]
    assert rec.committed == rec.prepared


async def test_default_weight_counts_callers() -> None:
    """Without a weight function every item weighs 1."""
    seen: list[list[int]] = []

    async def commit(items: Sequence[int], _p: None) -> list[int]:
        seen.append(list(items))
        return list(items)

    gc: GroupCommit[int, None, int] = GroupCommit(no_prepare, commit, max_weight=2)
    assert await asyncio.gather(*(gc.submit(i) for i in range(5))) == [0, 1, 2, 3, 4]
    assert seen == [[0, 1], [2, 3], [4]]


async def test_on_round_reports_callers_and_weight() -> None:
    """on_round is called once per round with (callers, total weight)."""
    rounds: list[tuple[int, int]] = []
    rec = Recorder()
    gc = GroupCommit(
        rec.prepare,
        rec.commit,
        weight=_weight,
        max_weight=10,
        on_round=lambda c, w: rounds.append((c, w)),
    )
    await asyncio.gather(*(gc.submit(Item(str(i), w)) for i, w in enumerate([3, 4, 12, 1])))
    assert rounds == [(2, 7), (1, 12), (1, 1)]


async def test_queued_weight_counts_waiting_readings() -> None:
    """queued_weight is the weight of items not yet taken into a round."""
    rec = Recorder()
    gc = _group(rec, max_weight=5, max_rounds=1)
    rec.hold_prepare["a"] = asyncio.Event()
    assert gc.queued_weight == 0
    first = _submit_all(gc, [Item("a", 5)])
    await _wait(rec.started("prepare", "a"))
    assert gc.queued_weight == 0  # taken into the round being prepared
    rest = _submit_all(gc, [Item("b", 2), Item("c", 3), Item("d", 4)])
    await _yield()
    assert gc.queued_weight == 9  # the only round allowed is open: they wait
    rec.hold_prepare["a"].set()
    await asyncio.gather(*first, *rest)
    assert gc.queued_weight == 0
    assert rec.prepared == [["a"], ["b", "c"], ["d"]]


# --- open rounds, pipelining and commit order ---------------------------------------------------


@pytest.mark.parametrize("max_rounds", [1, 2, 3, 5])
async def test_open_rounds_are_bounded_by_max_rounds(max_rounds: int) -> None:
    """At most max_rounds rounds are open (started, not committed) at once."""
    gate = asyncio.Event()
    open_now, peak = 0, 0

    async def prepare(items: Sequence[int]) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await gate.wait()

    async def commit(items: Sequence[int], _p: None) -> list[int]:
        nonlocal open_now
        open_now -= 1
        return list(items)

    gc: GroupCommit[int, None, int] = GroupCommit(
        prepare, commit, max_weight=1, max_rounds=max_rounds
    )
    tasks = [asyncio.create_task(gc.submit(i)) for i in range(6)]
    await _yield()
    assert open_now == max_rounds
    gate.set()
    assert await asyncio.gather(*tasks) == list(range(6))
    assert peak == max_rounds


async def test_submissions_wait_while_all_rounds_are_open_and_coalesce() -> None:
    """Items arriving one by one while every round is open join one next round."""
    rec = Recorder()
    gc = _group(rec, max_rounds=1)
    rec.hold_commit["a"] = asyncio.Event()
    first = _submit_all(gc, [Item("a")])
    await _wait(rec.started("commit", "a"))
    late = []
    for name in "bcd":
        late += _submit_all(gc, [Item(name)])
        await _yield(3)
    assert rec.prepared == [["a"]]
    rec.hold_commit["a"].set()
    assert await asyncio.gather(*first, *late) == ["a@a", "b@b+c+d", "c@b+c+d", "d@b+c+d"]


async def test_next_round_is_prepared_while_previous_commit_runs() -> None:
    """Round N+1's prepare runs during round N's commit (each waits for the other: no deadlock)."""
    log: list[str] = []
    commit_a_running = asyncio.Event()
    prepare_b_done = asyncio.Event()

    async def prepare(items: Sequence[str]) -> None:
        log.append(f"prepare start {items[0]}")
        if items[0] == "b":
            await commit_a_running.wait()  # only possible if a's commit runs meanwhile
            prepare_b_done.set()
        log.append(f"prepare end {items[0]}")

    async def commit(items: Sequence[str], _p: None) -> list[str]:
        log.append(f"commit start {items[0]}")
        if items[0] == "a":
            commit_a_running.set()
            await prepare_b_done.wait()  # only possible if b is prepared meanwhile
        log.append(f"commit end {items[0]}")
        return list(items)

    gc: GroupCommit[str, None, str] = GroupCommit(prepare, commit, max_weight=1, max_rounds=2)
    async with asyncio.timeout(GUARD_S):
        assert await asyncio.gather(gc.submit("a"), gc.submit("b")) == ["a", "b"]
    assert log.index("commit start a") < log.index("prepare end b") < log.index("commit end a")
    assert log.index("commit end a") < log.index("commit start b")


async def test_item_submitted_during_a_commit_is_prepared_without_waiting_for_it() -> None:
    """With a round slot free, an item submitted while a commit runs is prepared at once."""
    rec = Recorder()
    gc = _group(rec, max_rounds=2)
    rec.hold_commit["a"] = asyncio.Event()
    first = _submit_all(gc, [Item("a")])
    await _wait(rec.started("commit", "a"))
    late = _submit_all(gc, [Item("b")])
    try:
        await _wait(rec.started("prepare", "b"))
        await _yield()
        assert "prepare end b" in rec.log and "commit start b" not in rec.log
    finally:
        rec.hold_commit["a"].set()
        await asyncio.gather(*first, *late)
    assert rec.log.index("commit end a") < rec.log.index("commit start b")


async def test_commits_run_one_at_a_time_in_round_order() -> None:
    """Commits never overlap and run in round order, whatever order their holds are released."""
    rec = Recorder()
    gc = _group(rec, max_weight=1, max_rounds=3)
    for n in "abc":
        rec.hold_commit[n] = asyncio.Event()
    tasks = _submit_all(gc, [Item(n) for n in "abc"])
    await _wait(rec.started("commit", "a"))
    rec.hold_commit["c"].set()
    rec.hold_commit["b"].set()
    await _yield()
    assert rec.prepared == [["a"], ["b"], ["c"]]  # all three rounds are open
    assert rec.committed == [["a"]]  # b and c wait for a's commit
    rec.hold_commit["a"].set()
    assert await asyncio.gather(*tasks) == ["a@a", "b@b", "c@c"]
    commits = [line for line in rec.log if line.startswith("commit")]
    assert commits == [
        "commit start a",
        "commit end a",
        "commit start b",
        "commit end b",
        "commit start c",
        "commit end c",
    ]


async def test_commits_stay_in_order_when_prepares_finish_out_of_order() -> None:
    """A round whose prepare ends first still commits after the rounds before it."""
    rec = Recorder()
    gc = _group(rec, max_weight=1, max_rounds=3)
    rec.hold_prepare["a"] = asyncio.Event()
    rec.hold_prepare["b"] = asyncio.Event()
    tasks = _submit_all(gc, [Item(n) for n in "abc"])
    await _wait(rec.started("prepare", "c"))
    await _yield()
    assert "prepare end c" in rec.log and rec.committed == []
    rec.hold_prepare["b"].set()
    await _yield()
    assert rec.committed == []
    rec.hold_prepare["a"].set()
    assert await asyncio.gather(*tasks) == ["a@a", "b@b", "c@c"]
    assert rec.committed == [["a"], ["b"], ["c"]]


async def test_commit_order_holds_across_a_round_whose_prepare_failed() -> None:
    """A round after one whose prepare failed still waits for the commits before that one."""
    rec = Recorder()
    _fail_prepare(rec, "b")
    gc = _group(rec, max_weight=1, max_rounds=3)
    rec.hold_commit["a"] = asyncio.Event()
    tasks = _submit_all(gc, [Item(n) for n in "abc"])
    await _wait(rec.started("commit", "a"))
    await _wait(rec.started("prepare", "c"))
    await _yield()
    try:
        assert "commit start c" not in rec.log, "c committed while a's commit was still running"
    finally:
        rec.hold_commit["a"].set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "a@a" and isinstance(results[1], RuntimeError) and results[2] == "c@c"
    assert rec.log.index("commit end a") < rec.log.index("commit start c")


@pytest.mark.parametrize("max_rounds", [1, 2])
async def test_items_submitted_during_last_commit_are_processed(max_rounds: int) -> None:
    """Items queued while the last open round commits are not stranded."""
    rec = Recorder()
    gc = _group(rec, max_rounds=max_rounds)
    rec.hold_commit["a"] = asyncio.Event()
    first = _submit_all(gc, [Item("a")])
    await _wait(rec.started("commit", "a"))
    late = _submit_all(gc, [Item("b"), Item("c")])
    await _yield()
    rec.hold_commit["a"].set()
    async with asyncio.timeout(GUARD_S):
        assert await asyncio.gather(*first, *late) == ["a@a", "b@b+c", "c@b+c"]


async def test_group_commit_is_reusable_after_going_idle() -> None:
    """After every round finished, a new submission starts a new round."""
    rec = Recorder()
    gc = _group(rec)
    assert await gc.submit(Item("a")) == "a@a"
    await _yield()
    assert await gc.submit(Item("b")) == "b@b"
    assert rec.prepared == [["a"], ["b"]]


# --- errors -------------------------------------------------------------------------------------


async def test_exception_result_reaches_only_its_caller() -> None:
    """A commit result that is an exception is raised to that item's caller alone."""

    async def commit(items: Sequence[str], _p: None) -> list[str | BaseException]:
        return [ValueError(f"bad {it}") if it == "b" else it.upper() for it in items]

    gc: GroupCommit[str, None, str] = GroupCommit(no_prepare, commit)
    results = await asyncio.gather(*(gc.submit(n) for n in "abc"), return_exceptions=True)
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad b"


async def test_no_commit_hands_prepare_results_through() -> None:
    """With no_commit, prepare's per-item results (values or exceptions) are the answers."""

    async def prepare(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError("odd") if i % 2 else i * 10 for i in items]

    gc: GroupCommit[int, list[int | BaseException], int] = GroupCommit(prepare, no_commit)
    results = await asyncio.gather(*(gc.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert all(isinstance(r, ValueError) for r in (results[1], results[3]))


def _fail_prepare(rec: Recorder, name: str = "a") -> None:
    """Makes rec's prepare raise for the round whose first item is `name`."""
    original = rec.prepare

    async def prepare(items: Sequence[Item]) -> str:
        if items[0].name == name:
            rec.log.append(f"prepare failed {name}")
            raise RuntimeError("prepare failed")
        return await original(items)

    rec.prepare = prepare  # type: ignore[method-assign]


def _fail_commit(rec: Recorder, name: str = "a") -> None:
    """Makes rec's commit raise for the round whose first item is `name`."""
    original = rec.commit

    async def commit(items: Sequence[Item], prepared: str) -> list[str | BaseException]:
        if items[0].name == name:
            raise RuntimeError("commit failed")
        return await original(items, prepared)

    rec.commit = commit  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("break_stage", "message"),
    [(_fail_prepare, "prepare failed"), (_fail_commit, "commit failed")],
    ids=["prepare", "commit"],
)
async def test_stage_exception_reaches_its_whole_round_only(
    break_stage: Callable[[Recorder], None], message: str
) -> None:
    """A stage that raises fails every caller of that round; the next round is answered."""
    rec = Recorder()
    break_stage(rec)
    gc = _group(rec, max_weight=2)
    results = await asyncio.gather(*(gc.submit(Item(n)) for n in "abcd"), return_exceptions=True)
    assert [type(r) for r in results[:2]] == [RuntimeError, RuntimeError]
    assert all(str(r) == message for r in results[:2])
    assert results[2:] == ["c@c+d", "d@c+d"]


async def test_prepare_failure_does_not_commit_the_round() -> None:
    """A round whose prepare raised is never handed to commit."""
    rec = Recorder()
    _fail_prepare(rec)
    gc = _group(rec, max_weight=1)
    results = await asyncio.gather(
        gc.submit(Item("a")), gc.submit(Item("b")), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError) and results[1] == "b@b"
    assert rec.committed == [["b"]]


async def test_commit_failure_while_next_round_prepares_spares_next_round() -> None:
    """A commit failing while the next round is prepared fails only its own round."""
    rec = Recorder()
    _fail_commit(rec)
    gc = _group(rec, max_weight=1)
    rec.hold_prepare["b"] = asyncio.Event()
    tasks = _submit_all(gc, [Item("a"), Item("b")])
    await _wait(rec.started("prepare", "b"))
    with pytest.raises(RuntimeError, match="commit failed"):
        await tasks[0]
    rec.hold_prepare["b"].set()
    assert await tasks[1] == "b@b"


# --- cancellation -------------------------------------------------------------------------------


async def test_caller_cancelled_before_its_round_is_skipped() -> None:
    """A caller cancelled while still queued never reaches prepare; the others are answered."""
    rec = Recorder()
    gc = _group(rec, max_rounds=1)
    rec.hold_prepare["a"] = asyncio.Event()
    first = _submit_all(gc, [Item("a")])
    await _wait(rec.started("prepare", "a"))
    queued = _submit_all(gc, [Item("b"), Item("c"), Item("d")])
    await _yield()
    queued[1].cancel()
    await _yield()
    rec.hold_prepare["a"].set()
    assert await first[0] == "a@a"
    assert await queued[0] == "b@b+d"
    assert await queued[2] == "d@b+d"
    assert queued[1].cancelled()
    assert rec.prepared == [["a"], ["b", "d"]]
    assert gc.queued_weight == 0


async def test_caller_cancelled_in_the_same_turn_is_skipped() -> None:
    """A caller cancelled before the round of its event-loop turn is formed is left out."""
    rec = Recorder()
    gc = _group(rec)
    tasks = _submit_all(gc, [Item("a"), Item("b"), Item("c")])
    await asyncio.sleep(0)  # each task queued its item; the round is not formed yet
    tasks[1].cancel()
    assert await tasks[0] == "a@a+c" and await tasks[2] == "c@a+c"
    assert tasks[1].cancelled()
    assert rec.prepared == [["a", "c"]]


async def test_round_of_only_cancelled_callers_is_skipped() -> None:
    """A round whose callers all gave up is dropped without calling prepare."""
    rec = Recorder()
    gc = _group(rec, max_rounds=1)
    rec.hold_prepare["a"] = asyncio.Event()
    first = _submit_all(gc, [Item("a")])
    await _wait(rec.started("prepare", "a"))
    queued = _submit_all(gc, [Item("b")])
    await _yield()
    queued[0].cancel()
    await _yield()
    rec.hold_prepare["a"].set()
    assert await first[0] == "a@a"
    assert await gc.submit(Item("c")) == "c@c"
    assert rec.prepared == [["a"], ["c"]]


@pytest.mark.parametrize("stage", ["prepare", "commit"])
async def test_caller_cancelled_mid_round_does_not_break_others(stage: str) -> None:
    """Cancelling one caller while its round is in a stage leaves the others' answers intact."""
    rec = Recorder()
    gc = _group(rec)
    gate = asyncio.Event()
    (rec.hold_prepare if stage == "prepare" else rec.hold_commit)["a"] = gate
    tasks = _submit_all(gc, [Item("a"), Item("b"), Item("c")])
    await _wait(rec.started(stage, "a"))
    tasks[1].cancel()
    await _yield()
    gate.set()
    assert await tasks[0] == "a@a+b+c"
    assert await tasks[2] == "c@a+b+c"
    assert tasks[1].cancelled()
    assert rec.committed == [["a", "b", "c"]]  # its item was still processed
    assert await gc.submit(Item("d")) == "d@d"


async def test_caller_cancelled_mid_round_with_failing_commit() -> None:
    """A round-wide failure skips a caller that already gave up and reaches the rest."""
    rec = Recorder()
    _fail_commit(rec)
    gc = _group(rec)
    rec.hold_prepare["a"] = asyncio.Event()
    tasks = _submit_all(gc, [Item("a"), Item("b")])
    await _wait(rec.started("prepare", "a"))
    tasks[0].cancel()
    await _yield()
    rec.hold_prepare["a"].set()
    with pytest.raises(RuntimeError, match="commit failed"):
        await tasks[1]
    assert tasks[0].cancelled()


async def test_awaitable_stage_types_are_accepted() -> None:
    """Stages may be any callables returning awaitables (not only coroutine functions)."""
    loop = asyncio.get_running_loop()

    def prepare(items: Sequence[int]) -> Awaitable[int]:
        fut: asyncio.Future[int] = loop.create_future()
        fut.set_result(sum(items))
        return fut

    async def commit(items: Sequence[int], total: int) -> list[int]:
        return [total] * len(items)

    gc: GroupCommit[int, int, int] = GroupCommit(prepare, commit)
    assert await asyncio.gather(gc.submit(2), gc.submit(3)) == [5, 5]


# --- the bound on waiting work (overload is shed, not queued) -----------------------------------


async def test_work_beyond_the_queue_bound_is_shed_at_once() -> None:
    """With both rounds open, queued weight grows to max_queued_weight; a submission that would
    pass it raises Overloaded (naming the bound) without waiting; once the rounds drain, the
    queue takes work again. Shed items never reach a stage."""
    from heartrate_serve.core.errors import Overloaded

    rec = Recorder()
    gate = asyncio.Event()
    rec.hold_commit["a"] = gate
    gc = GroupCommit(
        rec.prepare, rec.commit, weight=_weight, max_weight=10, max_rounds=1, max_queued_weight=8
    )
    first = _submit_all(gc, [Item("a", 10)])
    await _wait(rec.started("commit", "a"))
    queued = _submit_all(gc, [Item("b", 5), Item("c", 3)])
    await _yield()
    assert gc.queued_weight == 8
    with pytest.raises(Overloaded, match=r"8 readings are waiting \(max_queued_readings 8\)"):
        await gc.submit(Item("d", 1))
    gate.set()
    assert await asyncio.gather(*first, *queued) == ["a@a", "b@b+c", "c@b+c"]
    assert gc.queued_weight == 0
    assert await gc.submit(Item("e", 1)) == "e@e"
    assert all("d" not in names for names in rec.prepared)


async def test_an_empty_queue_takes_one_item_heavier_than_the_bound() -> None:
    """A single batch bigger than the bound is not refused when nothing waits (it would never
    fit otherwise); a second one behind it is."""
    from heartrate_serve.core.errors import Overloaded

    rec = Recorder()
    gate = asyncio.Event()
    rec.hold_commit["a"] = gate
    gc = GroupCommit(
        rec.prepare, rec.commit, weight=_weight, max_weight=10, max_rounds=1, max_queued_weight=5
    )
    first = _submit_all(gc, [Item("a", 1)])
    await _wait(rec.started("commit", "a"))
    big = _submit_all(gc, [Item("big", 50)])
    await _yield()
    with pytest.raises(Overloaded):
        await gc.submit(Item("big2", 50))
    gate.set()
    assert await asyncio.gather(*first, *big) == ["a@a", "big@big"]


# --- linger: rounds wait for the callers still on their way back ---------------------------------


def _lingering(
    rec: Recorder, linger_s: float, max_weight: int = 100
) -> GroupCommit[Item, str, str]:
    return GroupCommit(
        rec.prepare,
        rec.commit,
        weight=_weight,
        max_weight=max_weight,
        max_rounds=2,
        max_preparing=1,
        linger_s=linger_s,
    )


async def test_linger_lone_caller_never_waits() -> None:
    """A caller that is the whole concurrency starts its round at once, linger or not (a linger
    of an hour would end the test by the guard)."""
    rec = Recorder()
    gc = _lingering(rec, linger_s=3600.0)
    async with asyncio.timeout(GUARD_S):
        for name in ("a", "b", "c"):
            assert await gc.submit(Item(name)) == f"{name}@{name}"
    assert rec.prepared == [["a"], ["b"], ["c"]]


async def test_linger_waits_for_the_rest_of_a_burst() -> None:
    """After a round of four callers, the first two back wait for the other two; the four then
    form one round (not a round of two and a round of two)."""
    rec = Recorder()
    gc = _lingering(rec, linger_s=3600.0)
    async with asyncio.timeout(GUARD_S):
        first = await asyncio.gather(*_submit_all(gc, [Item(n) for n in "abcd"]))
        assert first == ["a@a+b+c+d", "b@a+b+c+d", "c@a+b+c+d", "d@a+b+c+d"]
        early = _submit_all(gc, [Item("a2"), Item("b2")])
        await _yield()
        assert rec.prepared == [["a", "b", "c", "d"]]  # the two are lingering
        late = _submit_all(gc, [Item("c2"), Item("d2")])
        answers = await asyncio.gather(*early, *late)
    assert rec.prepared == [["a", "b", "c", "d"], ["a2", "b2", "c2", "d2"]]
    assert answers == [f"{n}@a2+b2+c2+d2" for n in ("a2", "b2", "c2", "d2")]


async def test_linger_counts_callers_in_open_rounds_as_present() -> None:
    """Callers whose round is still open are not waited for: with four callers in a round held
    in commit, a fifth is prepared at once (pipelined), not after a linger of an hour."""
    rec = Recorder()
    gc = _lingering(rec, linger_s=3600.0)
    async with asyncio.timeout(GUARD_S):
        rec.hold_commit["a"] = asyncio.Event()
        held = _submit_all(gc, [Item(n) for n in "abcd"])
        await _wait(rec.started("commit", "a"))
        fifth = asyncio.create_task(gc.submit(Item("e")))
        await _wait(rec.started("prepare", "e"))
        assert rec.committed == [["a", "b", "c", "d"]]  # the first round is still open
        rec.hold_commit["a"].set()
        assert await fifth == "e@e"
        await asyncio.gather(*held)
    assert rec.prepared == [["a", "b", "c", "d"], ["e"]]


async def test_linger_ends_after_linger_s() -> None:
    """Callers that do not come back are waited for linger_s at most: the two present then go
    as a round of their own (ended by the linger's timer, 20 ms here)."""
    rec = Recorder()
    gc = _lingering(rec, linger_s=0.02)
    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(*_submit_all(gc, [Item(n) for n in "abcd"]))
        answers = await asyncio.gather(*_submit_all(gc, [Item("a2"), Item("b2")]))
    assert answers == ["a2@a2+b2", "b2@a2+b2"]
    assert rec.prepared == [["a", "b", "c", "d"], ["a2", "b2"]]


async def test_linger_never_holds_a_full_round() -> None:
    """A queue that holds max_weight readings starts its round at once, however many callers
    are still out."""
    rec = Recorder()
    gc = _lingering(rec, linger_s=3600.0, max_weight=10)
    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(*_submit_all(gc, [Item(n) for n in "abcd"]))
        assert await gc.submit(Item("big", weight=10)) == "big@big"


async def test_linger_forgets_the_peak_after_an_idle_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After two windows without a round, a lone caller is the whole concurrency again: it does
    not wait for the four callers seen before (windows of 20 ms here; a linger of an hour)."""
    monkeypatch.setattr(group_commit, "PEAK_WINDOW_S", 0.02)
    rec = Recorder()
    gc = _lingering(rec, linger_s=3600.0)
    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(*_submit_all(gc, [Item(n) for n in "abcd"]))
        await asyncio.sleep(0.1)  # idle: more than two windows
        assert await gc.submit(Item("e")) == "e@e"
