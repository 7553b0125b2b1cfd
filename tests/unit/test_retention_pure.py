"""WAL retention without a server: the preflight's warnings, the metric, the alert's words."""

from __future__ import annotations

from paymigrate.replication.retention import (
    METRIC,
    UNLIMITED,
    Room,
    SlotWal,
    alert_lines,
    evaluate_room,
    human_bytes,
    metric_data,
)

GIB = 2**30


def test_unlimited_retention_warns_on_small_or_unknown_headroom_only():
    assert evaluate_room(Room(UNLIMITED, 500 * GIB)) == []
    [small] = evaluate_room(Room(UNLIMITED, 2 * GIB))
    assert "unlimited" in small and "2147483648 bytes (2.0 GiB)" in small
    [unknown] = evaluate_room(Room(UNLIMITED, None, "the server db1 is not on this machine"))
    assert "unknown (the server db1 is not on this machine)" in unknown and METRIC in unknown


def test_a_limit_above_the_free_disk_warns_and_a_limit_below_it_does_not():
    assert evaluate_room(Room(1024, 2 * GIB)) == []
    assert evaluate_room(Room(1024, None, "no privilege")) == []  # capped: the slot is lost, not the disk
    [over] = evaluate_room(Room(64 * 1024, 2 * GIB))
    assert "65536 MB" in over and "fill" in over


def test_room_says_what_it_does_not_know():
    text = str(Room(UNLIMITED, None, "data_directory is not readable by this role", None))
    assert text == ("max_slot_wal_keep_size unlimited, free disk on the data directory unknown "
                    "(data_directory is not readable by this role)")
    assert "pg_wal holds 1048576 bytes (1.0 MiB)" in str(Room(100, 10 * GIB, "", 2**20))


def test_metric_is_the_largest_slot_plus_one_per_slot():
    slots = [SlotWal("pm_dev", 300, True, "reserved"), SlotWal("pm_dev_reverse", 7000, False, "extended",
                                                             side="target"),
             SlotWal("pm_dev_new", None, False, "")]
    data = metric_data(slots, env="dev")
    assert data[0] == {"MetricName": METRIC, "Value": 7000.0, "Unit": "Bytes",
                       "Dimensions": [{"Name": "Environment", "Value": "dev"}]}
    assert [d["Dimensions"][1]["Value"] for d in data[1:]] == ["pm_dev", "pm_dev_reverse"]
    assert metric_data([], env="dev")[0]["Value"] == 0.0  # every slot dropped: nothing retained


def test_alert_names_the_slot_its_wal_and_the_commands_that_drop_it():
    [line] = alert_lines([SlotWal("paymigrate_prod", 3 * GIB, False, "extended")])
    assert "slot paymigrate_prod on the source retains 3221225472 bytes (3.0 GiB) of WAL" in line
    assert "on the target, `DROP SUBSCRIPTION IF EXISTS paymigrate_prod;`" in line
    assert "on the source, `SELECT pg_drop_replication_slot('paymigrate_prod');`" in line
    assert SlotWal("o'brien", 1, False, "").drop_sql == "SELECT pg_drop_replication_slot('o''brien');"
    assert alert_lines([]) == ["No replication slot of this migration is left on the servers."]


def test_human_bytes():
    assert human_bytes(10) == "10 bytes"
    assert human_bytes(1536) == "1536 bytes (1.5 KiB)"
