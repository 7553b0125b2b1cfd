"""Routing over several PgBouncers without a server: the agent's rules and its file, the signed
protocol, the contract's list of routers, and the switch's steps over N routers (fake consoles
and agents stand in for PgBouncer and the route agents here; tests/integration run the real ones).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from paymigrate.cutover.switch import (
    SWITCH_STEPS,
    PauseBudgetExceeded,
    Switch,
    SwitchResult,
    _abort,
    _Clock,
    _pause,
    _repoint,
    _resume_all,
)
from paymigrate.db import Endpoint
from paymigrate.errors import ContractError
from paymigrate.routing.agent import Agent, AgentConfig, decide, recover, serve
from paymigrate.routing.client import AgentClient, AgentConsole, AgentError, sign, verify
from paymigrate.routing.fleet import (
    Answer,
    FleetResult,
    RouterNode,
    next_generation,
    on_every,
    parse_routers,
    render_routers,
)
from paymigrate.routing.pgbouncer import Route, RouterError, read_routes

SOURCE = Endpoint("10.0.0.1", 5432, "payments", "app")
TARGET = Endpoint("10.0.0.2", 5432, "payments", "app")


def _route(ep: Endpoint) -> Route:
    return Route("payments", ep.host, ep.port, ep.dbname)


# ---- the agent's rules -----------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "action"), [
    ({"held": True}, "write"),
    ({"held": False}, "refuse"),  # a route never moves under live clients
    ({"held": False, "is_pending": True, "pending_previous": _route(SOURCE), "wanted": _route(SOURCE),
      "current": _route(TARGET)}, "write"),  # undoing a pending move is always allowed
    ({"held": True, "generation": 2}, "refuse"),  # a stale switch
    ({"held": False, "current": None}, "write"),  # a new database's first route
    ({"held": False, "wanted": _route(SOURCE)}, "unchanged"),
])
def test_decide(kw, action):
    args = {"current": _route(SOURCE), "wanted": _route(TARGET), "held": False,
            "pending_previous": None, "is_pending": False, "last_generation": 3, "generation": 4}
    assert decide(**{**args, **kw}).action == action


class FakeConsole:
    """PgBouncer's console as the agent uses it: paused flag, RELOAD reads the file."""

    def __init__(self, routes_file, *, paused=False, up=True):
        self.routes_file, self.paused_flag, self.up, self.reloads = routes_file, paused, up, 0
        self.live = read_routes(routes_file)

    def _check(self):
        if not self.up:
            raise RouterError("router refused 'RELOAD': connection refused")

    def paused(self, database):
        self._check()
        return self.paused_flag

    def reload(self):
        self._check()
        self.reloads += 1
        self.live = read_routes(self.routes_file)

    def route(self, database):
        r = self.live[database]
        return r.host, r.port

    def databases(self):
        self._check()
        return {db: {"host": r.host, "port": r.port, "paused": int(self.paused_flag)}
                for db, r in self.live.items()}

    def pause(self, database, *, timeout):
        self._check()
        self.paused_flag = True
        return 0.002

    def resume(self, database, quiet=False):
        self._check()
        self.paused_flag = False


@pytest.fixture
def agent(tmp_path):
    routes = tmp_path / "databases.ini"
    routes.write_text("[databases]\npayments = host=10.0.0.1 port=5432 dbname=payments\n")
    (tmp_path / "key").write_text("s3cret\n")
    config_file = tmp_path / "agent.json"
    config_file.write_text(json.dumps({"port": 0, "routes_file": str(routes), "key_file": str(tmp_path / "key"),
                                       "admin": {"host": "127.0.0.1", "port": 6432, "user": "admin"}}))
    a = Agent(AgentConfig.load(config_file))
    a.console = a.switch_console = FakeConsole(routes)
    return a


def test_the_agent_moves_a_route_only_while_paused_and_keeps_it_pending(agent):
    status, body = agent.set_route(_route(TARGET), 1)
    assert status == 409 and "not paused" in body["error"]
    assert read_routes(agent.config.routes_file)["payments"] == _route(SOURCE)
    agent.console.paused_flag = True
    assert agent.set_route(_route(TARGET), 1) == (200, {"action": "write", "written": True,
                                                        "live": "10.0.0.2:5432"})
    assert agent.state() == {"generation": 1, "pending": ["payments"],
                             "routes": {"payments": "10.0.0.2:5432/payments"}}
    assert agent.set_route(_route(SOURCE), 0)[0] == 409  # older than the generation it obeyed
    assert agent.confirm("payments", 1) == (200, {"confirmed": True, "route": "10.0.0.2 5432 payments"})
    assert agent.state()["pending"] == []


def test_a_pending_route_is_undone_by_the_switch_or_by_recover(agent):
    agent.console.paused_flag = True
    agent.set_route(_route(TARGET), 5)
    agent.console.paused_flag = False  # e.g. the router restarted: undoing needs no pause
    assert agent.set_route(_route(SOURCE), 5)[0] == 200
    assert agent.state()["pending"] == []
    agent.console.paused_flag = True
    agent.set_route(_route(TARGET), 6)
    assert recover(agent.config) == ["payments"]
    assert read_routes(agent.config.routes_file)["payments"] == _route(SOURCE)
    assert agent.state()["pending"] == []


def test_a_dead_pgbouncer_gets_its_file_written_and_the_call_says_it_did_not_take_it(agent):
    agent.console.up = False
    status, body = agent.set_route(_route(TARGET), 1)
    assert status == 503 and body["written"] and "did not take it" in body["error"]
    assert read_routes(agent.config.routes_file)["payments"] == _route(TARGET)


def test_a_pause_whose_switch_goes_silent_is_resumed_on_the_route_it_had(agent):
    assert agent.pause("payments", timeout=0.1, hold=0.2) == (200, {"seconds": 0.002})
    assert agent.console.paused_flag
    time.sleep(0.4)
    assert not agent.console.paused_flag
    assert read_routes(agent.config.routes_file)["payments"] == _route(SOURCE)


def test_a_pause_whose_route_moved_stays_held_past_its_hold(agent):
    agent.pause("payments", timeout=0.1, hold=0.2)
    assert agent.set_route(_route(TARGET), 1)[0] == 200
    time.sleep(0.4)
    assert agent.console.paused_flag  # resuming could send writes to a writer never handed over
    assert agent.resume("payments") == (200, {"resumed": "payments"})
    assert not agent.console.paused_flag


def test_a_resume_ends_the_hold_and_a_later_pause_gets_a_new_one(agent):
    agent.pause("payments", timeout=0.1, hold=0.2)
    agent.resume("payments")
    agent.pause("payments", timeout=0.1, hold=5)
    time.sleep(0.4)  # the first hold would have run out by now
    assert agent.console.paused_flag
    assert agent.pause("payments", timeout=2, hold=1)[0] == 400  # a hold shorter than its timeout


def test_a_foreign_reload_changes_nothing(agent):
    agent.console.reload()
    assert agent.console.route("payments") == ("10.0.0.1", 5432)


# ---- the signed protocol, on a real loopback server ------------------------------------------
def test_signatures_refuse_a_wrong_key_a_changed_body_and_an_old_call():
    sig = sign(b"k", "POST", "/routes/payments", "100.0", b"{}")
    assert verify(b"k", "POST", "/routes/payments", "100.0", b"{}", sig, now=101) is None
    assert verify(b"x", "POST", "/routes/payments", "100.0", b"{}", sig, now=101) == "bad signature"
    assert verify(b"k", "POST", "/routes/payments", "100.0", b'{"a":1}', sig, now=101) == "bad signature"
    assert "more than 30s away" in verify(b"k", "POST", "/routes/payments", "100.0", b"{}", sig, now=200)


def test_the_agent_over_http_refuses_an_unsigned_caller_and_proxies_the_console(agent):
    server = serve(agent.config, agent=agent)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(AgentError, match="401.*bad signature"):
            AgentClient("127.0.0.1", port, b"wrong").state()
        client = AgentClient("127.0.0.1", port, b"s3cret")
        assert client.state()["routes"] == {"payments": "10.0.0.1:5432/payments"}
        console = AgentConsole(client)
        assert console.pause("payments", timeout=1) == 0.002 and console.paused("payments")
        console.resume("payments")
        assert console.route("payments") == ("10.0.0.1", 5432) and not console.paused("payments")
        with pytest.raises(AgentError, match="404.*no database 'ledger'"):
            console.route("ledger")
    finally:
        server.shutdown()
        server.server_close()


# ---- the contract's routers ------------------------------------------------------------------
def test_routers_round_trip_and_bad_entries_are_named():
    specs = parse_routers('[{"name": "a", "agent": "10.0.1.5:6433"}, {"name": "b", "agent": "10.0.2.5:6433"}]',
                          admin_endpoint="x:1")
    assert [(s.name, s.agent_host) for s in specs] == [("a", "10.0.1.5"), ("b", "10.0.2.5")]
    assert parse_routers(render_routers(specs), admin_endpoint="x:1") == specs
    with pytest.raises(ContractError, match="not unique"):
        parse_routers('[{"name": "a", "agent": "h:2"}, {"name": "a", "agent": "h:4"}]', admin_endpoint="x:1")
    with pytest.raises(ContractError, match="'h:99999' is not host:port"):
        parse_routers('[{"name": "a", "agent": "h:99999"}]', admin_endpoint="x:1")


def test_next_generation_and_the_fleet_message():
    assert next_generation([]) == 1
    result = FleetResult("PAUSE", (Answer("a", True, 0.01), Answer("b", False, 0.2, "no answer")))
    assert (result.ok, result.failed, result.slowest) == (False, ("b",), 0.2)


# ---- the switch's steps over N routers, with fake routers ------------------------------------
class FakeAdmin:
    def __init__(self, name, log, *, pause_hangs=False, pause_fails=False, resume_fails=False):
        self.name, self.log = name, log
        self.pause_hangs, self.pause_fails, self.resume_fails = pause_hangs, pause_fails, resume_fails
        self.is_paused = False
        self.where = (SOURCE.host, SOURCE.port)

    def pause(self, database, *, timeout, hold=None):
        self.log.append(("PAUSE", self.name, time.monotonic()))
        assert hold is None or hold >= timeout
        if self.pause_hangs:
            time.sleep(timeout + 5)
        if self.pause_fails:
            raise RouterError(f"{self.name}: connection refused")
        self.is_paused = True
        return 0.001

    def resume(self, database, quiet=False):
        self.log.append(("RESUME", self.name, time.monotonic()))
        if self.resume_fails:
            raise RouterError(f"{self.name}: connection refused")
        self.is_paused = False

    def route(self, database):
        return self.where


class FakeAgent:
    def __init__(self, admin, *, fails=False):
        self.admin, self.fails, self.calls = admin, fails, []

    def set_route(self, route, *, generation, timeout):
        self.calls.append((route.host, generation))
        if self.fails:
            raise AgentError("route agent answered 503: route written; PgBouncer did not take it")
        self.admin.where = (route.host, route.port)
        return {"action": "write"}


def _fleet(*specs):
    log = []
    nodes = []
    for name, kw in specs:
        agent_fails = kw.pop("agent_fails", False)
        admin = FakeAdmin(name, log, **kw)
        nodes.append(RouterNode(name, admin, FakeAgent(admin, fails=agent_fails)))
    sw = Switch(source=SOURCE, target=TARGET, routers=tuple(nodes), database="payments", engine=None,
                tables=("public.payments",), max_write_pause=0.5, pause_timeout=0.2)
    return sw, log


def _clock(sw):
    result = SwitchResult("source->target", sw.max_write_pause, routers=[n.name for n in sw.routers])
    return _Clock(result, None, SWITCH_STEPS), result


def test_pause_reaches_every_router_at_once():
    sw, log = _fleet(("a", {}), ("b", {}), ("c", {}))
    clock, result = _clock(sw)
    clock.step("pause", lambda: _pause(sw, clock, result))
    sent = [t for what, _, t in log if what == "PAUSE"]
    assert len(sent) == 3 and max(sent) - min(sent) < 0.05
    assert set(result.pause_per_router) == {"a", "b", "c"}


def test_a_router_that_does_not_answer_pause_within_the_budget_fails_the_step_by_name():
    sw, _ = _fleet(("a", {}), ("b", {"pause_hangs": True}))
    clock, result = _clock(sw)
    started = time.monotonic()
    with pytest.raises(RouterError, match=r"PAUSE failed on 1 of 2 routers: b \(no answer within"):
        clock.step("pause", lambda: _pause(sw, clock, result))
    assert time.monotonic() - started < 0.2 + 0.5 + 0.3  # its timeout plus the grace, not its hang


def test_a_budget_smaller_than_the_pause_timeout_makes_a_hung_router_an_overrun():
    sw, _ = _fleet(("a", {}), ("b", {"pause_hangs": True}))
    sw = Switch(**{**sw.__dict__, "max_write_pause": 0.1, "pause_timeout": 5.0})
    clock, result = _clock(sw)
    with pytest.raises(PauseBudgetExceeded, match="ran out during pause"):
        clock.step("pause", lambda: _pause(sw, clock, result))


def test_a_repoint_failing_on_one_router_raises_naming_it_after_telling_all():
    sw, _ = _fleet(("a", {}), ("b", {"agent_fails": True}))
    with pytest.raises(RouterError, match="route failed on 1 of 2 routers: b"):
        _repoint(sw, TARGET, 7)
    assert [n.agent.calls for n in sw.routers] == [[("10.0.0.2", 7)], [("10.0.0.2", 7)]]


def test_the_abort_routes_every_router_back_and_resumes_every_one():
    sw, log = _fleet(("a", {}), ("b", {"agent_fails": True}), ("c", {}))
    result = SwitchResult("source->target", 0.5, generation=7)
    for n in sw.routers:
        n.console.is_paused = True
        n.console.where = (TARGET.host, TARGET.port)
    _abort(sw, result, paused=True, repointed=True, writer=SOURCE, frozen=None)
    assert [n.agent.calls[-1] for n in sw.routers] == [("10.0.0.1", 7)] * 3
    assert [n.console.where for n in sw.routers] == [(SOURCE.host, SOURCE.port), (TARGET.host, TARGET.port),
                                                   (SOURCE.host, SOURCE.port)]
    assert not any(n.console.is_paused for n in sw.routers)
    assert result.abort[0].startswith("route back: FAILED") and "b (" in result.abort[0]
    assert result.abort[1] == "resume: ok"


def test_after_the_commit_point_a_router_failing_resume_is_reported_not_aborted():
    sw, _ = _fleet(("a", {}), ("b", {"resume_fails": True}))
    result = SwitchResult("source->target", 0.5)
    _resume_all(sw, result)
    assert result.unresumed == ["b"]
    assert on_every(sw.routers, "x", lambda n: n.name, timeout=1).ok
