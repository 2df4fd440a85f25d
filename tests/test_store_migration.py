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
