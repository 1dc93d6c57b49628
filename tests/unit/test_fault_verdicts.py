"""The fault suite's verdicts: what counts as survived, double-active and lost."""

from perfplus_agent.lab.faults import FaultOutcome, FaultReport, format_fault_report


def outcome(running=("h2",), pacemaker=("h2",), max_running=1, intact=True, settled=True,
            injected=True, restarted=False) -> FaultOutcome:
    return FaultOutcome(1, "kill destination QEMU", "h1", "h2", injected, running, pacemaker,
                        max_running, intact, restarted, settled, 10.0)


def test_one_copy_where_pacemaker_says_with_memory_intact_survives():
    assert outcome().survived


def test_stopped_with_pacemaker_agreeing_survives():
    o = outcome(running=(), pacemaker=(), intact=None)
    assert o.survived and not o.lost


def test_two_running_copies_at_any_moment_are_double_active():
    assert outcome(max_running=2).double_active
    assert not outcome(max_running=2).survived
    assert outcome(running=("h1", "h2"), pacemaker=("h2",), max_running=1).double_active


def test_disagreement_with_pacemaker_or_bad_memory_is_lost():
    assert outcome(running=(), pacemaker=("h2",), intact=None).lost
    assert outcome(running=("h3",), pacemaker=("h2",)).lost
    assert outcome(intact=False).lost


def test_unsettled_or_not_injected_is_not_survived():
    assert not outcome(settled=False).survived
    assert not outcome(injected=False).survived


def test_report_line():
    report = FaultReport([outcome(), outcome(max_running=2, restarted=True),
                          outcome(running=(), pacemaker=(), intact=None)], 42.0)
    assert format_fault_report(report) == (
        "3 faults injected, 2 survived, 1 double-active, 0 lost (42 s; the guest kept running "
        "live through 1, was restarted by the recovery after 1; 1 ended with the guest stopped, "
        "as Pacemaker says)")
