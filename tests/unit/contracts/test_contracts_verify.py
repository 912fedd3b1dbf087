import base64
import datetime as dt

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from contracts.signing import sign_contract
from contracts.verify import verify_export
from operators.keys import generate_private_key, public_key_b64

UTC = dt.UTC
BUREAU, OPERATOR, OTHER = generate_private_key(), generate_private_key(), generate_private_key()
DOC = ContractDocument(
    id="c-1",
    version=2,
    operator_id="o-1",
    datasets={"人口": {"街道": ("group_by",)}},
    purpose="养老规划",
    purpose_class="commercial",
    valid_from=dt.datetime(2026, 1, 1, tzinfo=UTC),
    valid_to=dt.datetime(2027, 1, 1, tzinfo=UTC),
    quotas={},
    spend_cap=None,
    issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC),
)


def export(doc: ContractDocument = DOC, **changes: object) -> dict[str, object]:
    out: dict[str, object] = {
        "document": doc.to_json(),
        "canonical": base64.b64encode(canonical_bytes(doc)).decode(),
        "signatures": {
            "bureau": sign_contract(BUREAU, doc),
            "operator": sign_contract(OPERATOR, doc),
        },
    }
    out.update(changes)
    return out


def test_a_genuine_export_verifies_with_both_keys() -> None:
    r = verify_export(export(), public_key_b64(BUREAU), public_key_b64(OPERATOR))
    assert r.ok and r.contract_id == "c-1" and r.version == 2 and len(r.checked) == 3


def test_an_edited_document_is_caught_by_bytes_and_signatures() -> None:
    edited = export()
    edited["document"] = {**DOC.to_json(), "purpose": "商业营销"}
    r = verify_export(edited, public_key_b64(BUREAU), public_key_b64(OPERATOR))
    assert not r.ok
    assert any("canonical bytes differ" in p for p in r.problems)
    assert any(p.startswith("bureau signature") for p in r.problems)
    assert any(p.startswith("operator signature") for p in r.problems)


def test_a_signature_by_another_key_is_refused() -> None:
    r = verify_export(export(), public_key_b64(OTHER), public_key_b64(OPERATOR))
    assert not r.ok and r.problems[0].startswith("bureau signature")


def test_a_missing_signature_is_a_problem_and_a_missing_key_is_reported_as_unchecked() -> None:
    r = verify_export(
        export(signatures={"bureau": sign_contract(BUREAU, DOC)}),
        public_key_b64(BUREAU),
        public_key_b64(OPERATOR),
    )
    assert r.problems == ("the contract has no operator signature",)
    r = verify_export(export(), public_key_b64(BUREAU))
    assert r.ok and r.skipped and "operator" in r.skipped[0]


def test_garbage_is_reported_not_raised() -> None:
    assert not verify_export({"document": {"id": 1}}, public_key_b64(BUREAU)).ok
    assert not verify_export(export(canonical="%%%"), public_key_b64(BUREAU)).ok
