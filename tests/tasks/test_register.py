"""The gates: judged on held-out forms, every reason written out, null figures "not measured"."""

from tasks.common import Gates
from tasks.register import decide

GOOD = {"paraphrase": 0.6, "checks": None, "retention_heldout_before": 0.9, "retention_heldout": 0.85,
        "reading": 0.95}


def test_a_good_night_passes_every_gate_with_its_reason():
    promote, reasons = decide(GOOD, Gates(), None, None)
    assert promote and len(reasons) == 4 and all(r.startswith("pass: ") for r in reasons)
    assert "learned (paraphrase) 0.600" in reasons[0] and "no champion yet" in reasons[-1]


def test_each_failing_gate_says_why():
    bad = {**GOOD, "paraphrase": 0.1, "retention_heldout": 0.5, "reading": 0.2}
    promote, reasons = decide(bad, Gates(), 0.9, 0.8)
    assert not promote
    assert [r.split(":")[0] for r in reasons] == ["FAIL"] * 4
    assert "0.900 -> 0.500" in reasons[1] and "shared probes 0.800 vs champion 0.900" in reasons[3]


def test_null_figures_pass_as_not_measured():
    """A user's probe-less documents on a model born elsewhere: nothing to compare, nothing failed."""
    unknown = {"paraphrase": None, "checks": None, "retention_heldout_before": None, "retention_heldout": None,
               "reading": None}
    promote, reasons = decide(unknown, Gates(), None, None)
    assert promote
    assert reasons[:3] == ["pass: not measured: learned (checks)", "pass: not measured: held-out retention",
                           "pass: not measured: reading"]


def test_probe_less_nights_are_judged_on_their_checks():
    night = {**GOOD, "paraphrase": None, "checks": 0.1}
    promote, reasons = decide(night, Gates(), None, None)
    assert not promote and reasons[0].startswith("FAIL: learned (checks) 0.100")
