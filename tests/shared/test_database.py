"""The query layer, on each engine: the same SQL means the same thing on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import psycopg
import pytest

from cms.config import Settings
from cms.errors import StoreError
from cms.shared.database import Database

from ..cluster.support import free_port

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (id {id}, name TEXT NOT NULL UNIQUE, body {blob},
    at {real}, flag INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
"""


@pytest.fixture
def database(shared_settings: Settings) -> Iterator[Database]:
    opened = Database.for_store(shared_settings, "items")
    opened.schema(_SCHEMA)
    yield opened
    opened.close()


def test_values_come_back_as_they_went_in(database: Database) -> None:
    at = 1_717_171_717.123456  # a timestamp keeps its microseconds
    database.execute("INSERT INTO items (name, body, at, flag) VALUES (?, ?, ?, ?)",
                     "one", b"\x00\xffbytes", at, True)
    database.execute("INSERT INTO items (name, body, at) VALUES (?, ?, ?)", "two 100%?", None, None)
    assert database.rows("SELECT name, body, at, flag FROM items ORDER BY id") == [
        {"name": "one", "body": b"\x00\xffbytes", "at": at, "flag": 1},
        {"name": "two 100%?", "body": None, "at": None, "flag": 0}]
    assert database.tuples("SELECT id, name FROM items WHERE name LIKE ? ORDER BY id", "%o%") == [
        (1, "one"), (2, "two 100%?")]
    assert database.value("SELECT COUNT(*) FROM items WHERE flag = ?", False) == 1
    assert database.value("SELECT name FROM items WHERE id = ?", 99) is None


def test_on_conflict_and_ids_that_only_grow(database: Database) -> None:
    sql = "INSERT INTO items (name) VALUES (?) ON CONFLICT (name) DO NOTHING"
    assert database.execute(sql, "a") == 1
    assert database.execute(sql, "a") == 0
    database.execute("DELETE FROM items WHERE name = ?", "a")
    database.execute(sql, "b")
    ((taken, name),) = database.tuples("SELECT id, name FROM items")
    assert name == "b"
    assert taken > 1  # never given again (an insert that did nothing may use one up too)


def test_a_transaction_that_raises_leaves_nothing(database: Database) -> None:
    def half_way() -> None:
        with database.transaction() as session:
            session.execute("INSERT INTO items (name) VALUES (?)", "half")
            raise KeyError("half-way")

    with pytest.raises(KeyError):
        half_way()
    assert database.value("SELECT COUNT(*) FROM items") == 0


def test_read_then_write_is_serialised_across_instances(shared_settings: Settings,
                                                        database: Database) -> None:
    """Each increment reads the counter and writes it plus one; from eight threads of two
    instances at once, none is lost: every write transaction saw every earlier one."""
    other = Database.for_store(shared_settings, "items")
    database.execute("INSERT INTO counters (name, value) VALUES ('n', 0)")
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def increment(instance: Database) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(25):
                with instance.transaction() as session:
                    seen = session.value("SELECT value FROM counters WHERE name = 'n'")
                    session.execute("UPDATE counters SET value = ? WHERE name = 'n'", seen + 1)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=increment, args=((database, other)[n % 2],))
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    other.close()
    assert failures == []
    assert database.value("SELECT value FROM counters WHERE name = 'n'") == 200


def test_a_snapshot_sees_one_state_while_another_instance_commits(shared_settings: Settings,
                                                                  database: Database) -> None:
    other = Database.for_store(shared_settings, "items")
    other.execute("INSERT INTO items (name) VALUES ('before')")
    with database.snapshot() as view:
        assert view.value("SELECT COUNT(*) FROM items") == 1
        other.execute("INSERT INTO items (name) VALUES ('during')")
        assert database.value("SELECT COUNT(*) FROM items") == 1  # the same view, in this thread
    assert database.value("SELECT COUNT(*) FROM items") == 2
    other.close()


_WRITER = """
import sys
from pathlib import Path
from cms.config import load_settings
from cms.shared.database import Database
settings = load_settings(data=Path(sys.argv[1]))
Database.for_store(settings, "items").execute("INSERT INTO items (name) VALUES (?)", sys.argv[2])
"""


def test_another_process_s_commits_are_read_after_this_one_opened_the_file_again(
        settings: Settings) -> None:
    """Two stores of one process on one SQLite file, the second opened after the first had
    read; another process commits and exits. Opening the file must not drop the first's
    locks (closing any descriptor of a file drops every POSIX lock the process holds on it),
    or the exiting process takes itself for the last one and resets the log under it."""
    first = Database.for_store(settings, "items")
    first.schema(_SCHEMA)
    first.execute("INSERT INTO items (name) VALUES ('before')")
    assert first.value("SELECT name FROM items WHERE name = 'before'") == "before"
    second = Database.for_store(settings, "counters")  # the same file
    second.schema(_SCHEMA)
    for name in ("after", "later"):  # each process the only other one while it lives
        subprocess.run([sys.executable, "-c", _WRITER, str(settings.data), name], check=True,
                       timeout=60)
        assert first.value("SELECT name FROM items WHERE name = ?", name) == name
    assert first.value("SELECT COUNT(*) FROM items") == 3
    first.close()
    second.close()


def test_a_write_inside_a_snapshot_is_refused(database: Database) -> None:
    with database.snapshot(), pytest.raises(RuntimeError, match="snapshot"):
        database.execute("INSERT INTO items (name) VALUES ('x')")


def test_stores_that_start_together_make_their_schema_once(shared_settings: Settings) -> None:
    start = threading.Barrier(6)
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            start.wait(timeout=30)
            Database.for_store(shared_settings, "fresh").schema(
                "CREATE TABLE IF NOT EXISTS fresh (id {id}, name TEXT)")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []


def test_a_dropped_connection_is_replaced_on_the_next_use(postgres_url: str) -> None:
    database = Database(postgres_url, "items")
    database.schema(_SCHEMA)
    assert database.value("SELECT COUNT(*) FROM items") == 0
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        # What a restarted server or a proxy's timeout does to the connections kept for later.
        dropped = admin.execute(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert dropped is not None
    assert dropped[0] >= 1
    assert database.execute("INSERT INTO items (name) VALUES ('after')") == 1
    assert database.value("SELECT COUNT(*) FROM items") == 1
    database.close()


def test_an_unreachable_database_is_a_store_error_that_keeps_the_password_out() -> None:
    url = f"postgresql://cms:hunter2-secret@127.0.0.1:{free_port()}/cms"
    database = Database(url, "items")
    with pytest.raises(StoreError) as refused:
        database.value("SELECT 1")
    assert refused.value.status == 503
    assert "hunter2" not in refused.value.message
    assert "hunter2" not in repr(database)
    database.close()


def test_a_full_disk_is_a_store_error(settings: Settings) -> None:
    database = Database.for_store(settings, "items")
    database.schema(_SCHEMA)
    # SQLite's own ceiling on the file's size stands in for a full disk: the same error.
    with database.transaction() as session:
        session.execute("PRAGMA max_page_count = 8")
    with pytest.raises(StoreError, match="out of disk space"):
        database.execute("INSERT INTO items (name, body) VALUES ('big', ?)", b"x" * 100_000)
    database.close()
