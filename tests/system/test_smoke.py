from conftest import World


def test_job_on_ray_releases_grouped_counts(world: World) -> None:
    cid = world.active_contract()
    r = world.run(
        cid, 'emit("t", table("population").group_by("district").agg(n=count()).collect())'
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    assert sum(row[1] for row in job["outputs"]["t"]["rows"] if row[1]) <= 20_000
