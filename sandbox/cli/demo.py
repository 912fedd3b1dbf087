"""`sandbox demo`: the product's promise, told step by step on a throw-away instance.

Every step goes through the real HTTP API (in-process ASGI client), real SQLite, real Parquet
and, by default, a real local Ray.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

with warnings.catch_warnings():
    # The in-process client is the point here; its transport deprecation notice is noise.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from operators.keys import generate_key, public_key_b64, sign
from operators.submission import sign_submission
from operators.suite import DEFAULT_SUITE, Suite
from sandbox.api.app import create_app
from sandbox.catalog.synthetic import generate_city
from sandbox.cli.startup import stoppable
from sandbox.context import ensure_ray
from sandbox.ledger.note import open_checkpoint
from sandbox.ledger.verify import LedgerSource, parse_bureau_key, verify_log
from sandbox.records.principals import bootstrap
from sandbox.settings import Settings

PRICES = {
    "name": "2026 年公共数据产品收费标准",
    "effective_from": "2026-01-01T00:00:00Z",
    "items": [
        {"unit": "call", "price": "2.00"},
        {"unit": "rows", "per": 10000, "price": "0.10", "level": "L3"},
        {"unit": "rows", "per": 10000, "price": "0.05", "level": "L2"},
        {"unit": "compute_seconds", "price": "0.01"},
        {"unit": "output", "price": "0.50"},
    ],
}

JOB = """\
pop = table("population")
aged = pop.derive(age=params["year"] - col("birth_date").year()).filter(col("age") >= 60)
banded = aged.derive(age_band=col("age").bucket([60, 70, 80, 90]))
res = banded.group_by("district", "age_band").agg(n=count(), avg_income=mean("income"))
released = res.collect()
emit("residents_60_plus", released)
counts = [(band, n) for district, band, n, avg in released.rows if n is not None]
emit("share_80_plus", sum([n for band, n in counts if band in ("[80, 90)", ">= 90")])
     / sum([n for band, n in counts]))
"""

BY_DISTRICT = """\
res = table("population").group_by("district").agg(n=count(), total=sum("income"))
emit("income_by_district", res.collect())
"""

OUT_OF_CONTRACT = """\
res = table("population").group_by("hukou_type").agg(n=count()).collect()
emit("by_hukou", res)
"""

ESCAPE = """\
klass = ().__class__.__base__
for sub in klass.__subclasses__():
    print(sub)
"""

BAND_ORDER = ["[60, 70)", "[70, 80)", "[80, 90)", ">= 90"]

# A data product's template: its code and the parameters its customers may pass.
ELDERLY = """\
born_by = params["year"] - params["min_age"]
res = (
    table("population")
    .filter(col("birth_date").year() <= born_by)
    .group_by("district")
    .agg(n=count())
    .collect()
)
emit("elderly_by_district", res.sort("n", descending=True))
"""
ELDERLY_PARAMS = {
    "type": "object",
    "properties": {
        "year": {"type": "integer", "minimum": 2020, "maximum": 2026, "default": 2026},
        "min_age": {"type": "integer", "enum": [60, 65, 70, 80]},
    },
    "required": ["min_age"],
}
SCENARIO = "养老服务"


class Story:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        self.console.rule(f"[bold cyan]{self.step}. {text}")

    def say(self, text: str) -> None:
        self.console.print(text)


def _check(r: Any, status: int = 200) -> dict[str, Any]:
    if r.status_code not in (status, 201):
        raise RuntimeError(f"{r.request.method} {r.request.url.path} → {r.status_code}: {r.text}")
    return r.json()  # type: ignore[no-any-return]


def run_demo(
    console: Console,
    residents: int = 30_000,
    seed: int = 2026,
    executor: str = "ray",
    crypto_suite: Suite = DEFAULT_SUITE,
) -> None:
    started = time.monotonic()
    story = Story(console)
    with tempfile.TemporaryDirectory(prefix="sandbox-demo-") as tmp:
        settings = Settings(data_dir=Path(tmp), executor=executor, partition_rows=10_000)
        if executor == "ray":
            with stoppable():  # Ctrl-C stops the demo while Ray starts, too
                ensure_ray(settings)  # from the main thread: Ray's processes live as long as it
        ctx, bureau = bootstrap(settings, suite=crypto_suite)
        story.title("A throw-away instance")
        story.say(
            f"SQLite, the bureau's {crypto_suite.signature_name} key and Parquet files live in "
            f"{tmp}. Jobs run on "
            f"{'a local Ray cluster started now' if executor == 'ray' else 'this process'}. "
            f"Crypto suite: {crypto_suite.value} ({crypto_suite.signature_name} signatures, "
            f"{crypto_suite.hash_name} for the log and the tokens)."
        )
        with TestClient(create_app(context=ctx)) as client:
            _tell(story, client, bureau, residents, seed, crypto_suite)
        ctx.close()
    console.rule()
    console.print(
        f"[bold green]Done[/] in {time.monotonic() - started:.1f} s. Everything above "
        "went through the HTTP API: see `sandbox serve` and /docs to run it for real."
    )


def _tell(
    story: Story, client: TestClient, bureau: str, residents: int, seed: int, suite: Suite
) -> None:
    def h(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    story.title("The bureau registers who takes part")
    op_key = generate_key(suite)
    people = {}
    for name, role, extra in [
        ("市公安局", "provider", {}),
        ("市人力资源和社会保障局", "provider", {}),
        ("市市场监督管理局", "provider", {}),
        (
            "智城数据科技有限公司",
            "operator",
            {"license_no": "授权运营-2026-007", "public_key": public_key_b64(op_key)},
        ),
        ("市数据资源监管处", "regulator", {}),
    ]:
        people[name] = _check(
            client.post(
                "/v1/principals", headers=h(bureau), json={"name": name, "role": role, **extra}
            ),
            201,
        )
        story.say(f"  {role:<9} {name}  ({people[name]['id']}, token shown once)")
    police, hrss, market = (
        people[n] for n in ("市公安局", "市人力资源和社会保障局", "市市场监督管理局")
    )
    operator, regulator = people["智城数据科技有限公司"], people["市数据资源监管处"]

    story.title("Departments' data enters the catalog (raw rows never leave it)")
    city = generate_city(residents, seed=seed)
    owners = {"population": police, "social_insurance": hrss, "enterprises": market}
    for name, ds in city.items():
        buf = io.BytesIO()
        pq.write_table(ds.table, buf)
        meta = {
            "name": name,
            "title": ds.title,
            "topic": ds.topic,
            "description": ds.description,
            "provider_id": owners[name]["id"],
            "level": ds.level,
            "columns": ds.columns,
        }
        info = _check(
            client.post(
                "/v1/datasets",
                headers=h(bureau),
                files={"file": (f"{name}.parquet", buf.getvalue())},
                data={"meta": json.dumps(meta, ensure_ascii=False)},
            ),
            201,
        )
        story.say(
            f"  {info['name']:<17} {info['title']:<14} level {info['level']}  "
            f"{info['row_count']:>7} rows, owned by {owners[name]['id']}"
        )
    roles = Table(
        "column of population",
        "type",
        "role",
        title="What an operator can see: shape and policy, never values",
    )
    for c in client.get("/v1/datasets/population", headers=h(operator["token"])).json()["columns"]:
        roles.add_row(c["name"], c["type"], c["role"])
    story.console.print(roles)

    story.title("The bureau publishes its fees (public, no token needed)")
    _check(client.post("/v1/price-schedules", headers=h(bureau), json=PRICES), 201)
    for item in client.get("/v1/price-schedules/current").json()["items"]:
        per = f" per {item['per']} rows" if item.get("per") else ""
        story.say(f"  {item['unit']:<16} {item['price']} yuan{per} {item.get('level', '')}")

    story.title("A usage contract: applied for, approved, signed twice")
    contract = _check(
        client.post(
            "/v1/contracts",
            headers=h(operator["token"]),
            json={
                "datasets": {
                    "population": {
                        "district": ["group_by"],
                        "birth_date": ["group_by", "filter"],
                        "income": ["aggregate"],
                    }
                },
                "purpose": "养老服务设施布局规划",
                "purpose_class": "commercial",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_to": "2027-12-31T00:00:00Z",
                "spend_cap": "500.00",
            },
        ),
        201,
    )
    cid = contract["id"]
    story.say(
        f"  operator applies for {cid}: district (group_by), birth_date (group_by, filter), "
        "income (aggregate only)"
    )
    story.say(
        f"  provider 市公安局 approves → "
        f"{_check(client.post(f'/v1/contracts/{cid}/approve', headers=h(police['token'])))['status']}"
    )
    story.say(
        f"  bureau signs → "
        f"{_check(client.post(f'/v1/contracts/{cid}/sign', headers=h(bureau)))['status']}"
    )
    canonical = base64.b64decode(contract["canonical"])
    signed = _check(
        client.post(
            f"/v1/contracts/{cid}/sign",
            headers=h(operator["token"]),
            json={"signature": sign(op_key, canonical)},
        )
    )
    story.say(
        f"  operator signs the canonical bytes with its {suite.signature_name} key → "
        f"{signed['status']}"
    )

    story.title("The operator's job: residents 60+ by district and age band")
    story.console.print(Syntax(JOB, "python", line_numbers=True, word_wrap=True))
    params = {"year": 2024}
    body = {"contract_id": cid, "code": JOB, "params": params, "idempotency_key": "demo-1"}
    q = _check(client.post("/v1/quotes", headers=h(operator["token"]), json=body))
    story.say(
        f"  quote before running: at most {q['quote']['amount']} yuan "
        f"(≤ {q['bounds']['rows_scanned']} rows, ≤ {q['bounds']['outputs']} outputs)"
    )
    body.update(sign_submission(op_key, cid, JOB, params, "demo-1"))
    t = time.monotonic()
    job = _check(client.post("/v1/jobs?wait=true", headers=h(operator["token"]), json=body), 201)
    story.say(
        f"  job {job['id']} {job['status']} in {time.monotonic() - t:.2f} s; its code ran "
        "in a locked-down process that only ever received the released aggregate"
    )
    _show_release(story, job)

    story.title("The bill")
    for line in job["charge"]["lines"]:
        story.say(f"  {line['unit']:<16} {str(line['quantity']):>8}  {line['amount']:>6} yuan")
    story.say(
        f"  [bold]charged {job['charge']['amount']} yuan[/] (quoted {job['quote']['amount']}); "
        f"usage: {job['usage']['rows_scanned']} rows scanned, "
        f"{job['usage']['compute_seconds']} s"
    )
    period = job["finished_at"][:7]
    bill = _check(client.get(f"/v1/bills?period={period}", headers=h(operator["token"])))
    story.say(f"  statement {period}: {len(bill['charges'])} charge(s), total {bill['total']} yuan")

    story.title("A job outside the contract is refused")
    story.console.print(Syntax(OUT_OF_CONTRACT, "python", line_numbers=True, word_wrap=True))
    r = client.post(
        "/v1/jobs?wait=true",
        headers=h(operator["token"]),
        json={"contract_id": cid, "code": OUT_OF_CONTRACT},
    )
    story.say(f"  HTTP {r.status_code} [yellow]{r.json()['code']}[/]: {r.json()['error']}")

    story.title("An escape attempt is rejected before anything runs")
    story.console.print(Syntax(ESCAPE, "python", line_numbers=True, word_wrap=True))
    r = client.post(
        "/v1/jobs?wait=true",
        headers=h(operator["token"]),
        json={"contract_id": cid, "code": ESCAPE},
    )
    story.say(f"  HTTP {r.status_code} [yellow]{r.json()['code']}[/]: {r.json()['error']}")

    _new_version(story, client, police, operator, cid, city["population"].table)
    _product(story, client, bureau, police, operator, regulator, cid)

    story.title("The regulator checks the tamper-evident log")
    head = _check(client.get("/v1/ledger/checkpoint", headers=h(regulator["token"])))
    keys = client.get("/v1/keys").json()
    checkpoint, names = open_checkpoint(
        head["checkpoint"], {n: base64.b64decode(keys["bureau"]) for n in [_origin(head)]}
    )
    story.console.print(Panel(head["checkpoint"].rstrip(), title="signed checkpoint (C2SP note)"))
    story.say(
        f"  {checkpoint.size} events; root hash verified against the bureau's public key "
        f"(signed by: {', '.join(names)})"
    )
    entries = _check(
        client.get(
            f"/v1/ledger/entries?start=0&end={checkpoint.size}", headers=h(regulator["token"])
        )
    )["entries"]
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[e["event"]["type"]] = kinds.get(e["event"]["type"], 0) + 1
    story.say("  " + ", ".join(f"{k} ×{v}" for k, v in kinds.items()))
    _verify_from_outside(story, client, regulator["token"], keys["ledger_vkey"])


def _verify_from_outside(story: Story, client: TestClient, token: str, vkey: str) -> None:
    """What `sandbox ledger verify` does, through the same HTTP API and the same code."""
    key = parse_bureau_key(vkey)
    report = verify_log(LedgerSource("", token, client=client), key)
    if not report.ok:
        raise RuntimeError(f"the log does not verify: {report.problems}")
    story.say(
        f"  `sandbox ledger verify` rebuilt the {key.hasher.name} Merkle tree of all "
        f"{report.entries_checked} entries and checked its root against the "
        f"{key.suite.signature_name}-signed checkpoint: verified"
    )


def _product(
    story: Story,
    client: TestClient,
    bureau: str,
    police: dict[str, Any],
    operator: dict[str, Any],
    regulator: dict[str, Any],
    cid: str,
) -> None:
    """Authorized operation: an analysis reviewed once by its department becomes a product
    the operator sells per call, within the bureau's cap for its scenario."""

    def h(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    story.title("A data product: a template reviewed once, sold per call within the cap")
    story.console.print(Syntax(ELDERLY, "python", line_numbers=True, word_wrap=True))
    template = _check(
        client.post(
            "/v1/templates",
            headers=h(operator["token"]),
            json={"name": "分区老年人口", "code": ELDERLY, "params_schema": ELDERLY_PARAMS},
        ),
        201,
    )
    tid = template["id"]
    story.say(f"  operator submits template {tid}: this code, parameters min_age ∈ 60/65/70/80")
    reviewed = _check(
        client.post(
            f"/v1/templates/{tid}/versions/1/reviews",
            headers=h(police["token"]),
            json={"decision": "approve", "conditions": "仅输出区级人数"},
        )
    )
    story.say(
        f"  市公安局 reviews that exact code (sha256 "
        f"{reviewed['versions'][0]['code_sha256'][:12]}…) → {reviewed['versions'][0]['status']}"
    )
    _check(
        client.put(
            f"/v1/product-caps/{SCENARIO}",
            headers=h(bureau),
            json={"max_price": "3.00", "description": "养老服务机构选址与床位规划"},
        )
    )
    story.say(f"  bureau caps the scenario {SCENARIO} at 3.00 yuan per call")
    product = {
        "name": "分区老年人口速查",
        "scenario": SCENARIO,
        "description": "各区老年人口数，按年龄下限",
        "purpose_class": "commercial",
        "contract_id": cid,
        "template_id": tid,
        "template_version": 1,
    }
    r = client.post("/v1/products", headers=h(operator["token"]), json={**product, "price": "3.50"})
    story.say(f"  priced at 3.50 → HTTP {r.status_code} [yellow]{r.json()['code']}[/]")
    made = _check(
        client.post(
            "/v1/products", headers=h(operator["token"]), json={**product, "price": "3.00"}
        ),
        201,
    )
    key = _check(
        client.post(
            f"/v1/products/{made['id']}/keys",
            headers=h(operator["token"]),
            json={"customer": "某养老服务连锁企业"},
        ),
        201,
    )["key"]
    story.say(f"  priced at 3.00 → product {made['id']}; a customer gets its own key")
    headers = {"X-Product-Key": key}
    url = f"/v1/products/{made['id']}/calls"
    answer = _check(client.post(url, headers=headers, json={"params": {"min_age": 80}}))
    top = answer["outputs"]["elderly_by_district"]["rows"][:3]
    story.say(
        f"  customer calls min_age=80 → {answer['status']}, price {answer['price']}; "
        "most: " + ", ".join(f"{d} {n}" for d, n in top)
    )
    r = client.post(url, headers=headers, json={"params": {"min_age": 67}})
    story.say(f"  customer calls min_age=67 → HTTP {r.status_code} [yellow]{r.json()['code']}[/]")
    period = answer["created_at"][:7]
    report = _check(
        client.get(f"/v1/reports/revenue?period={period}", headers=h(regulator["token"]))
    )
    for line in report["products_by_scenario"]:
        story.say(
            f"  regulator's revenue report, {line['scenario']}: {line['calls']} call(s), revenue "
            f"{line['revenue']} of at most {line['max_allowed_revenue']} yuan"
        )


def _new_version(
    story: Story,
    client: TestClient,
    police: dict[str, Any],
    operator: dict[str, Any],
    cid: str,
    population: pa.Table,
) -> None:
    """A department corrects one resident's income in a new version: the same question asked
    on each version must not give her change away."""

    def by_district() -> dict[str, tuple[Any, Any]]:
        job = _check(
            client.post(
                "/v1/jobs?wait=true",
                headers={"Authorization": f"Bearer {operator['token']}"},
                json={"contract_id": cid, "code": BY_DISTRICT},
            ),
            201,
        )
        out = job["outputs"]["income_by_district"]
        hidden = {(i, c) for i, c in out["suppressed"]}
        return {
            row[0]: (row[1], None if (i, "total") in hidden else row[2])
            for i, row in enumerate(out["rows"])
        }

    story.title("The data changes: a new version, and what it must not give away")
    story.console.print(Syntax(BY_DISTRICT, "python", line_numbers=True, word_wrap=True))
    before = by_district()
    rows = population.to_pylist()
    target = next(r for r in rows if r["income"])
    incomes = [
        r["income"] + 8000 if r["resident_id"] == target["resident_id"] else r["income"]
        for r in rows
    ]
    corrected = population.set_column(
        population.schema.get_field_index("income"),
        "income",
        pa.array(incomes, population.schema.field("income").type),
    )
    buf = io.BytesIO()
    pq.write_table(corrected, buf)
    published = _check(
        client.post(
            "/v1/datasets/population/versions",
            headers={"Authorization": f"Bearer {police['token']}"},
            files={"file": ("population.parquet", buf.getvalue())},
            data={"meta": json.dumps({"mode": "replace"})},
        ),
        201,
    )
    story.say(
        f"  市公安局 publishes version {published['version']} of population (one resident's "
        f"income corrected): {published['revised']} person revised, quality "
        f"{published['quality_status']}"
    )
    after = by_district()
    table = Table("district", "total on version 1", "total on version 2")
    for district in sorted(before):
        total = after.get(district, (None, None))[1]
        shown = "[red]▒ withheld (difference)[/]" if total is None else f"{total:,.0f}"
        table.add_row(district, f"{before[district][1] or 0:,.0f}", shown)
    story.console.print(table)
    story.say(
        f"  {target['district']}'s total would differ by exactly her correction, so it is "
        "withheld (with one more cell, so it cannot be recovered from the others); "
        "jobs record which version they read"
    )


def _origin(head: dict[str, Any]) -> str:
    return str(head["checkpoint"].split("\n", 1)[0])


def _show_release(story: Story, job: dict[str, Any]) -> None:
    out = job["outputs"]["residents_60_plus"]
    suppressed = {(i, c) for i, c in out["suppressed"]}
    names = [c["name"] for c in out["columns"]]
    order = sorted(
        range(len(out["rows"])),
        key=lambda i: (
            out["rows"][i][0],
            BAND_ORDER.index(out["rows"][i][1]) if out["rows"][i][1] in BAND_ORDER else 99,
        ),
    )
    table = Table(
        *names,
        title="released: residents_60_plus (groups of fewer than 10 "
        "residents are not shown; ▒ = suppressed)",
    )
    for i in order:
        row = out["rows"][i]
        cells = []
        for name, value in zip(names, row):
            if (i, name) in suppressed:
                cells.append("[red]▒ suppressed[/]")
            elif isinstance(value, float):
                cells.append(f"{value:,.0f}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    story.console.print(table)
    share = job["outputs"]["share_80_plus"]["value"]
    story.say(
        f"  computed in the job's own Python from released cells: share of 80+ among "
        f"60+ = {share:.1%}"
    )
    for release in job["disclosure"]["releases"]:
        hidden = ", ".join(
            f"row {s['row']} {s['column']} ({s['rule']})" for s in release["suppressed"]
        )
        story.say(
            f"  disclosure report: {release['cells']} cells released, "
            f"{len(release['suppressed'])} of them suppressed" + (f": {hidden}" if hidden else "")
        )
