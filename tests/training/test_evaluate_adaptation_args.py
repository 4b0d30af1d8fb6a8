"""``python -m training.evaluate_adaptation --conditions``: a condition other than clean / noisy is refused before
any data is loaded."""
import pytest

from training import evaluate_adaptation


def test_an_unknown_2d_condition_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate_adaptation, "load_cmu", lambda: pytest.fail("data loaded before the check"))
    with pytest.raises(SystemExit) as stopped:
        evaluate_adaptation.main(["--adapted", str(tmp_path / "w.pt"), "--conditions", "clean,dirty"])
    assert stopped.value.code == 2
    assert "--conditions takes clean and/or noisy" in capsys.readouterr().err
