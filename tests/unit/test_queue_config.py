from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.queueing import DEFAULT_QUEUE, QueueConfigError, QueueSet

REPO = Path(__file__).resolve().parents[2]

GOOD = """
queues:
  - name: research
    weight: 2
    cohort: lab
    quotas:
      - {vendor: ascend, model: "Ascend 910B", nominal: 64, borrowing_limit: 32}
      - {vendor: nvidia, nominal: 16}
  - name: prod
    cohort: lab
    quotas:
      - {vendor: ascend, model: "Ascend 910B", nominal: 32}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(QueueConfigError) as info:
        QueueSet.parse(text, "queues.yaml")
    return str(info.value).splitlines()


def test_good_file_and_lookups() -> None:
    qs = QueueSet.parse(GOOD)
    assert qs.names == ["research", "prod", DEFAULT_QUEUE]
    assert qs.weight("research") == 2.0 and qs.weight("prod") == 1.0
    assert qs.quota_for("research", ("ascend", "Ascend 910B")) == (64, 32)
    assert qs.quota_for("research", ("ascend", "ascend 910b")) == (64, 32)  # models match case-blind
    assert qs.quota_for("research", ("nvidia", "H100")) == (16, None)  # in a cohort: cohort decides
    assert qs.quota_for("research", ("cambricon", "MLU370")) is None  # no entry: unlimited
    assert qs.quota_for("prod", ("nvidia", "H100")) is None
    assert [q.name for q in qs.cohort_peers("research")] == ["prod"]
    assert qs.check_queue("research") is None


def test_default_queue_always_exists_and_unknown_queues_are_named() -> None:
    qs = QueueSet.default()
    assert list(q.name for q in qs) == [DEFAULT_QUEUE]
    assert qs.quota_for(DEFAULT_QUEUE, ("nvidia", "H100")) is None
    msg = QueueSet.parse(GOOD).check_queue("reserch")
    assert msg == "unknown queue 'reserch' (did you mean 'research'?); known queues: default, prod, research"


def test_quota_without_cohort_has_no_borrowing() -> None:
    qs = QueueSet.parse("queues: [{name: solo, quotas: [{vendor: nvidia, nominal: 8}]}]")
    assert qs.quota_for("solo", ("nvidia", "A100")) == (8, 0)


def test_negative_nominal_names_file_queue_and_field() -> None:
    text = GOOD.replace("nominal: 32", "nominal: -4")
    assert errors(text) == ["queues.yaml: queues[1] (prod).quotas[0].nominal: must be ≥ 0 (got -4)"]


def test_duplicate_queue_names_refused() -> None:
    text = "queues:\n  - name: a\n  - name: b\n  - name: a\n"
    [line] = errors(text)
    assert line.startswith("queues.yaml: queues[2] (a).name: queue 'a' is already defined at queues[0]")


def test_borrowing_limit_needs_a_cohort() -> None:
    text = "queues: [{name: a, quotas: [{vendor: nvidia, nominal: 4, borrowing_limit: 2}]}]"
    [line] = errors(text)
    assert line.startswith("queues.yaml: queues[0] (a).quotas[0].borrowing_limit: ")
    assert "set the queue's cohort or remove borrowing_limit" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queues: [{name: Research}]", "queues[0] (Research).name: must be lowercase letters"),
        ("queues: [{name: a, wieght: 2}]", "queues[0] (a).wieght: unknown field (did you mean 'weight'?)"),
        ("queues: [{name: a, weight: 0}]", "queues[0] (a).weight: must be a number > 0 (got 0)"),
        (
            "queues: [{name: a, quotas: [{vendor: npu, nominal: 1}]}]",
            "quotas[0].vendor: unknown vendor 'npu' (did you mean 'ascend'?)",
        ),
        ("queues: [{name: a, quotas: [{vendor: nvidia}]}]", "queues[0] (a).quotas[0].nominal: required"),
        ("queues: [{name: a, quotas: [{vendor: nvidia, nominal: 1.5}]}]", "must be a whole number"),
        ("queues: [{name: a, quotas: [{vendor: nvidia, nominal: 1, limit: 2}]}]", "allowed: vendor, model"),
        ("queues: [{weight: 2}]", "queues[0].name: required"),
        ("queue: []", "queues.yaml: queue: unknown field (did you mean 'queues'?)"),
        ("- a\n- b", "must be a mapping with a 'queues' list"),
        ("queues: [", "YAML syntax error at line 1"),
        (
            "queues: [{name: a, quotas: [{vendor: nvidia, nominal: 1}, {vendor: NVIDIA, nominal: 2}]}]",
            "queues[0] (a).quotas[1]: nvidia (all models) already has a quota at quotas[0]",
        ),
    ],
)
def test_bad_files_name_the_field(text: str, expected: str) -> None:
    lines = errors(text)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("queues.yaml: ") for line in lines)


def test_load_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text("queues: [{name: a, weight: -1}]\n")
    with pytest.raises(QueueConfigError, match=r"queues\.yaml: queues\[0\] \(a\)\.weight"):
        QueueSet.load(path)
    with pytest.raises(QueueConfigError, match="cannot read"):
        QueueSet.load(tmp_path / "missing.yaml")


def test_example_file_loads() -> None:
    qs = QueueSet.load(REPO / "examples" / "queues.yaml")
    assert DEFAULT_QUEUE in qs and len(qs) >= 3
