"""A campaign database written by an earlier Crucible opens under the current one: the proposal table gains the
columns that record what the planner knew (``model_made``, ``analysed_seen``, ``failed_seen``, ``pending_json``)
and keeps every row it had. On a real SQLite file and on the machine's PostgreSQL server."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from orchestrator.store import CampaignRecord, ExperimentRecord, ProposalRecord, Store

OLD_SCHEMA = [
    "CREATE TABLE campaign (id VARCHAR PRIMARY KEY, name VARCHAR UNIQUE NOT NULL, spec_json TEXT NOT NULL, "
    "status VARCHAR NOT NULL, budget_experiments INTEGER, created_at TIMESTAMP NOT NULL, "
    "updated_at TIMESTAMP NOT NULL)",
    'CREATE TABLE experiment (id VARCHAR PRIMARY KEY, campaign_id VARCHAR NOT NULL REFERENCES campaign(id), "index" '
    "INTEGER NOT NULL, sample_id VARCHAR NOT NULL, status VARCHAR NOT NULL, instrument VARCHAR, approved BOOLEAN NOT "
    "NULL, excluded_reason VARCHAR, conditions_json TEXT NOT NULL, outcomes_json TEXT, failure_reason VARCHAR, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL)",
    "CREATE TABLE proposal (id VARCHAR PRIMARY KEY, experiment_id VARCHAR UNIQUE NOT NULL REFERENCES experiment(id), "
    "strategy VARCHAR NOT NULL, acquisition_value FLOAT, predicted_json TEXT NOT NULL, created_at TIMESTAMP NOT NULL)",
    "INSERT INTO campaign VALUES ('c1', 'old', '{}', 'finished', NULL, '2026-11-01 10:00:00', '2026-11-01 10:00:00')",
    "INSERT INTO experiment VALUES ('e1', 'c1', 0, 'old-0000', 'analysed', 'furnace', TRUE, NULL, '{}', NULL, NULL, "
    "'2026-11-01 10:00:00', '2026-11-01 10:00:00')",
    "INSERT INTO proposal VALUES ('p1', 'e1', 'sobol', NULL, '{}', '2026-11-01 10:00:00')",
]


def write_old_database(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in OLD_SCHEMA:
            connection.execute(text(statement))
    engine.dispose()


def check_migrated(url: str) -> None:
    store = Store(url)
    columns = {c["name"] for c in inspect(store.engine).get_columns("proposal")}
    assert {"model_made", "analysed_seen", "failed_seen", "pending_json"} <= columns
    (old,) = store.proposals("c1").values()
    assert old.strategy == "sobol" and old.analysed_seen is None and old.pending == []
    campaign = CampaignRecord(name="new", spec_json="{}")
    experiment = ExperimentRecord(campaign_id=campaign.id, index=0, sample_id="new-0000", conditions_json="{}")
    proposal = ProposalRecord(
        experiment_id=experiment.id, strategy="qLogNEI", model_made=True, analysed_seen=5, pending_json="[3]"
    )
    store.add(campaign)
    store.add(experiment, proposal)
    assert store.proposals(campaign.id)[experiment.id].pending == [3]
    store.close()
    Store(url).close()  # opening again finds nothing to add


def test_an_old_sqlite_database_gains_the_new_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.db'}"
    write_old_database(url)
    check_migrated(url)


def test_an_old_postgresql_database_gains_the_new_columns(postgres_url: str) -> None:
    write_old_database(postgres_url)
    check_migrated(postgres_url)


def test_a_campaign_begun_before_workflows_were_data_resumes_without_losing_a_step(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Experiments an earlier Crucible left ``made`` (a sample, no pattern) and ``measured`` (a pattern, not
    analysed), with the sample and reading in the old tables and bare outcome names: the campaign opens under the
    default workflow, keeps the old sample and pattern (their jobs are not run again), and finishes."""
    import json

    from orchestrator.campaign import Campaign
    from orchestrator.lab import Lab
    from orchestrator.scheduler import Scheduler, ThreadExecutor
    from orchestrator.simulated_lab import SimulatedLab
    from orchestrator.spec import parse_campaign
    from orchestrator.store import ExperimentStatus, ReadingRecord, SampleRecord
    from sim_lab.serve import build_driver
    from tests.conftest import example_campaign

    data = example_campaign(name="legacy", budget={"experiments": 4, "batch_size": 1})
    spec = parse_campaign(data)
    store = Store(f"sqlite:///{tmp_path / 'legacy.db'}")
    tray = tmp_path / "tray"
    campaign = CampaignRecord(name="legacy", spec_json=spec.model_dump_json())
    store.add(campaign)
    furnace = build_driver("synthesiser", "tio2_calcination", str(tray), 7, 0.0)
    xrd = build_driver("diffractometer", "tio2_calcination", str(tray), 7, 0.0)

    class Job:
        job_id, aborted = "old", False

        def progress(self, *args: object) -> None:
            pass

    conditions = {"anneal_temperature_c": 650.0, "anneal_time_h": 2.0, "dopant_fraction": 0.02}
    old = {}
    for index, status in enumerate(["analysed", "made", "measured"]):
        sample_id = f"legacy-{index:04d}"
        bare = {
            "anatase_crystallite_size_nm": {"value": 20.0, "std": 0.5},
            "rutile_fraction": {"value": 0.01, "std": 0.01},
        }
        experiment = ExperimentRecord(
            campaign_id=campaign.id, index=index, sample_id=sample_id, status=status, instrument="furnace",
            conditions_json=json.dumps(conditions), outcomes_json=json.dumps(bare) if status == "analysed" else None,
        )
        made = furnace.run({"sample_id": sample_id, "conditions": conditions}, Job())
        records: list = [SampleRecord(id=sample_id, experiment_id=experiment.id, instrument="furnace",
                                      job_id=f"{experiment.id}-synthesis", result_json=json.dumps(made))]
        if status == "measured":
            reading = xrd.run({"sample_id": sample_id, "counting_time_s": 1.0}, Job())["reading"]
            records.append(ReadingRecord(experiment_id=experiment.id, sample_id=sample_id, instrument="xrd",
                                         job_id=f"{experiment.id}-xrd", kind="diffractogram",
                                         data_json=json.dumps(reading)))
        store.add(experiment, *records)
        old[status] = experiment.id

    with SimulatedLab(spec, tray), Lab.from_spec(spec) as lab:
        resumed = Campaign.open(spec, store, lab, resume=True)
        assert store.experiment(old["made"]).status == ExperimentStatus.RAN
        assert store.experiment(old["made"]).step == 0
        assert store.experiment(old["measured"]).step == 1
        executor = ThreadExecutor()
        Scheduler(resumed, executor).run()
        executor.close()
    experiments = store.experiments(campaign.id)
    assert [e.status for e in experiments] == [ExperimentStatus.ANALYSED] * 4
    for status in ("made", "measured"):
        results = store.step_results(old[status])
        assert [r.step for r in results] == ["synthesis", "xrd"]
        assert results[0].job_id == f"{old[status]}-synthesis"  # the old sample, not a new one
    measured = store.step_results(old["measured"])[1]
    assert measured.job_id == f"{old['measured']}-xrd" and measured.reading is not None  # the old pattern, kept
    # the old experiment's bare outcome names still reach the planner
    told = [o for o in resumed.observations() if not o.failed]
    assert any(o.outcomes["anatase_crystallite_size_nm"] == 20.0 for o in told)
