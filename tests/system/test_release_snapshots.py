"""The release history a job starts from is shared between jobs while it stays the same: a
contract's next job reuses it (on Ray, from the object store), a new release makes a new one,
and either way it holds exactly the sets the database holds."""

from __future__ import annotations

from typing import Any

from conftest import World

from sandbox import release_history

BY_DISTRICT = ('res = table("population").group_by("district").agg(n=count()).collect()\n'
               'emit("r", res)\n')
OLD_BY_DISTRICT = ('res = table("population").filter(col("birth_date") < "1960-01-01")'
                   '.group_by("district").agg(n=count()).collect()\nemit("r", res)\n')


def _succeeded(w: World, cid: str, code: str) -> dict[str, Any]:
    r = w.run(cid, code)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    return r.json()


def _snapshot(w: World, cid: str) -> Any:
    with w.ctx.reading() as s:
        return w.ctx.snapshots.for_job(s, cid, ["population"])["population"]


def _stored(w: World, cid: str) -> tuple[bytes, ...]:
    with w.ctx.reading() as s:
        return release_history.load(s, cid, ["population"]).get("population", ())


def test_jobs_share_a_history_until_it_grows(world: World) -> None:
    import ray

    cid = world.active_contract()
    assert _snapshot(world, cid).sets == ()          # nothing released yet
    _succeeded(world, cid, BY_DISTRICT)
    first = _snapshot(world, cid)
    assert first is _snapshot(world, cid)            # the next job gets the same one
    assert first.sets is None and ray.get(first.ref) == _stored(world, cid)
    _succeeded(world, cid, BY_DISTRICT)               # the same cells again: nothing new
    assert _snapshot(world, cid) is first
    _succeeded(world, cid, OLD_BY_DISTRICT)          # other people: the history grows
    grown = _snapshot(world, cid)
    assert grown.key[2] > first.key[2]
    assert ray.get(grown.ref) == _stored(world, cid)
    assert len(ray.get(grown.ref)) > len(ray.get(first.ref))


def test_another_contract_does_not_see_the_history(world: World) -> None:
    mine, theirs = world.active_contract(), world.active_contract(operator="other_operator")
    _succeeded(world, mine, BY_DISTRICT)
    assert _snapshot(world, theirs).sets == ()
