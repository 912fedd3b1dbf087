"""The synthetic city: valid identifiers, consistent keys, realistic shapes, determinism."""

from __future__ import annotations

import collections
import datetime as dt
import pathlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sandbox.catalog.synthetic import (
    DISTRICT_WEIGHTS,
    DISTRICTS,
    INDUSTRIES,
    INDUSTRY_WEIGHTS,
    REFERENCE_DATE,
    CityDataset,
    generate_city,
    write_city,
)

RESIDENTS = 20_000
CHINESE = re.compile(r"^[\u4e00-\u9fff]+$")
CHINESE_PERSON_NAME = re.compile(r"^[\u4e00-\u9fff]{2,4}$")
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

EXPECTED_SCHEMAS = {
    "population": pa.schema(
        [
            ("resident_id", pa.string()),
            ("name", pa.string()),
            ("gender", pa.string()),
            ("birth_date", pa.date32()),
            ("district", pa.string()),
            ("hukou_type", pa.string()),
            ("income", pa.int64()),
        ]
    ),
    "enterprises": pa.schema(
        [
            ("credit_code", pa.string()),
            ("name", pa.string()),
            ("industry", pa.string()),
            ("district", pa.string()),
            ("registered_capital", pa.int64()),
            ("employees", pa.int64()),
            ("established", pa.date32()),
            ("deregistered", pa.date32()),
        ]
    ),
    "social_insurance": pa.schema(
        [
            ("resident_id", pa.string()),
            ("credit_code", pa.string()),
            ("contribution_base", pa.int64()),
            ("months_paid", pa.int64()),
            ("insured_since", pa.date32()),
        ]
    ),
}


@pytest.fixture(scope="module")
def city() -> dict[str, CityDataset]:
    return generate_city(RESIDENTS, seed=7)


def resident_id_check(body: str) -> str:
    """GB 11643-1999 check character, written out independently of the generator."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(digit) * weight for digit, weight in zip(body, weights))
    return "10X98765432"[total % 11]


def credit_code_check(body: str) -> str:
    """GB 32100-2015 check character, written out independently of the generator."""
    weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(CREDIT_ALPHABET.index(char) * weight for char, weight in zip(body, weights))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def organisation_code_check(body: str) -> str:
    """GB 11714-1997 check character of the 8-character organisation code."""
    weights = [3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(
        (int(c) if c.isdigit() else ord(c) - ord("A") + 10) * w for c, w in zip(body, weights)
    )
    return {10: "X", 11: "0"}.get(11 - total % 11, str(11 - total % 11))


def ages(population: pa.Table) -> np.ndarray:
    return REFERENCE_DATE.year - pc.year(population["birth_date"]).to_numpy()


def test_check_characters_match_published_examples() -> None:
    # Worked examples from GB 11643-1999 and GB 32100-2015 (91350100M000100Y43 embeds M000100Y-4).
    assert resident_id_check("11010519491231002") == "X"
    assert resident_id_check("44052418800101001") == "4"
    assert credit_code_check("91350100M000100Y4") == "3"
    assert organisation_code_check("M000100Y") == "4"


def test_datasets_come_in_order_with_levels_titles_and_schemas(
    city: dict[str, CityDataset],
) -> None:
    assert list(city) == ["population", "enterprises", "social_insurance"]
    assert {name: d.level for name, d in city.items()} == {
        "population": "L3",
        "enterprises": "L2",
        "social_insurance": "L3",
    }
    for name, dataset in city.items():
        assert dataset.name == name
        assert CHINESE.match(dataset.title)
        assert dataset.table.schema.equals(EXPECTED_SCHEMAS[name]), name


def test_roles_cover_every_column_and_bounds_hold(city: dict[str, CityDataset]) -> None:
    valid_roles = {"identifier", "quasi_identifier", "sensitive", "attribute"}
    for dataset in city.values():
        assert list(dataset.columns) == dataset.table.column_names
        for column, meta in dataset.columns.items():
            assert meta["role"] in valid_roles
            if "lower" in meta:
                values = dataset.table[column]
                assert pc.min(values).as_py() >= meta["lower"], column
                assert pc.max(values).as_py() <= meta["upper"], column
    assert city["population"].columns["income"] == {
        "role": "sensitive",
        "lower": 0,
        "upper": 200_000,
        "description": "月收入（元）",
    }
    assert city["population"].columns["resident_id"]["role"] == "identifier"
    assert city["social_insurance"].columns["insured_since"]["role"] == "quasi_identifier"


def test_same_seed_gives_identical_bytes_and_other_seeds_differ() -> None:
    def ipc_bytes(datasets: dict[str, CityDataset]) -> list[bytes]:
        out = []
        for dataset in datasets.values():
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, dataset.table.schema) as writer:
                writer.write_table(dataset.table)
            out.append(sink.getvalue().to_pybytes())
        return out

    first, again = generate_city(2_000, seed=1), generate_city(2_000, seed=1)
    other = generate_city(2_000, seed=2)
    assert ipc_bytes(first) == ipc_bytes(again)
    for name in first:
        assert not first[name].table.equals(other[name].table), name


def test_resident_ids_are_valid_unique_and_match_birth_date_gender_and_district(
    city: dict[str, CityDataset],
) -> None:
    population = city["population"].table
    ids = population["resident_id"].to_pylist()
    assert len(set(ids)) == len(ids) == RESIDENTS
    area_by_district: dict[str, set[str]] = collections.defaultdict(set)
    for resident_id, birth, gender, district in zip(
        ids,
        population["birth_date"].to_pylist(),
        population["gender"].to_pylist(),
        population["district"].to_pylist(),
    ):
        assert len(resident_id) == 18 and resident_id[:17].isdigit()
        assert resident_id[17] == resident_id_check(resident_id[:17])
        assert resident_id[6:14] == birth.strftime("%Y%m%d")
        assert int(resident_id[14:17]) % 2 == (1 if gender == "男" else 0)
        assert resident_id[14:17] != "000"
        area_by_district[district].add(resident_id[:6])
    assert all(len(codes) == 1 for codes in area_by_district.values())
    assert len({codes.pop() for codes in area_by_district.values()}) == len(DISTRICTS)


def test_credit_codes_are_valid_unique_and_match_district(city: dict[str, CityDataset]) -> None:
    enterprises = city["enterprises"].table
    codes = enterprises["credit_code"].to_pylist()
    assert len(set(codes)) == len(codes) == RESIDENTS // 50
    population = city["population"].table
    area_codes = pc.utf8_slice_codeunits(population["resident_id"], 0, 6)
    population_area = dict(zip(population["district"].to_pylist(), area_codes.to_pylist()))
    for code, district in zip(codes, enterprises["district"].to_pylist()):
        assert len(code) == 18 and set(code) <= set(CREDIT_ALPHABET)
        assert code[:2] == "91"
        assert code[2:8] == population_area[district]
        assert code[17] == credit_code_check(code[:17])
        assert code[16] == organisation_code_check(code[8:16])


def test_social_insurance_keys_exist_and_employment_share_is_realistic(
    city: dict[str, CityDataset],
) -> None:
    population, enterprises = city["population"].table, city["enterprises"].table
    insurance = city["social_insurance"].table
    assert pc.all(pc.is_in(insurance["resident_id"], value_set=population["resident_id"])).as_py()
    assert pc.all(pc.is_in(insurance["credit_code"], value_set=enterprises["credit_code"])).as_py()
    assert pc.count_distinct(insurance["resident_id"]).as_py() == insurance.num_rows

    age = ages(population)
    insured = pc.is_in(population["resident_id"], value_set=insurance["resident_id"])
    insured = insured.to_numpy(zero_copy_only=False)
    assert insured[(age < 18) | (age > 60)].sum() == 0
    working_age = (age >= 18) & (age <= 60)
    assert 0.55 <= insured.sum() / working_age.sum() <= 0.65


def test_enterprise_headcount_covers_insured_staff_and_is_heavy_tailed(
    city: dict[str, CityDataset],
) -> None:
    enterprises = city["enterprises"].table
    insured = collections.Counter(city["social_insurance"].table["credit_code"].to_pylist())
    employees = enterprises["employees"].to_numpy()
    for code, headcount in zip(enterprises["credit_code"].to_pylist(), employees):
        assert insured[code] <= headcount
    assert employees.min() >= 1
    assert employees.max() > 10 * np.median(employees)
    capital = enterprises["registered_capital"].to_numpy()
    assert (capital % 10_000 == 0).all() and capital.min() >= 10_000
    listed = pc.ends_with(enterprises["name"], "股份有限公司").to_numpy(zero_copy_only=False)
    assert (employees[listed] >= 500).all()


def test_contribution_base_follows_income_within_floor_and_ceiling(
    city: dict[str, CityDataset],
) -> None:
    population, insurance = city["population"].table, city["social_insurance"].table
    income_by_id = dict(
        zip(population["resident_id"].to_pylist(), population["income"].to_pylist())
    )
    income = np.array([income_by_id[rid] for rid in insurance["resident_id"].to_pylist()])
    base = insurance["contribution_base"].to_numpy()
    assert base.min() == 4_000 and base.max() <= 30_000
    assert np.corrcoef(np.log(income + 1), np.log(base))[0, 1] > 0.7
    months = insurance["months_paid"].to_numpy()
    assert months.min() >= 1 and months.max() <= 480


def test_insured_since_lies_between_eighteenth_birthday_and_reference_date(
    city: dict[str, CityDataset],
) -> None:
    population, insurance = city["population"].table, city["social_insurance"].table
    birth_by_id = dict(
        zip(population["resident_id"].to_pylist(), population["birth_date"].to_pylist())
    )
    for rid, since, months in zip(
        insurance["resident_id"].to_pylist(),
        insurance["insured_since"].to_pylist(),
        insurance["months_paid"].to_pylist(),
    ):
        assert birth_by_id[rid] + dt.timedelta(days=int(18 * 365.2425)) <= since < REFERENCE_DATE
        # Months paid never exceed the months elapsed since first insured (plus rounding).
        assert months <= (REFERENCE_DATE - since).days / 30.43 + 1


def test_ages_income_and_demographics_are_plausible(city: dict[str, CityDataset]) -> None:
    population = city["population"].table
    age = ages(population)
    assert age.min() == 0 and age.max() <= 100
    assert 0.55 <= ((age >= 18) & (age <= 60)).mean() <= 0.68
    assert ((age >= 65).mean()) > 0.1
    income = population["income"].to_numpy()
    assert (income[age < 16] == 0).all()
    assert (income[age > 60] == 0).mean() > 0.15
    adults = income[(age >= 25) & (age <= 50) & (income > 0)]
    assert 3_000 < np.median(adults) < 12_000 and adults.max() > 3 * np.median(adults)
    genders = collections.Counter(population["gender"].to_pylist())
    assert set(genders) == {"男", "女"} and 0.45 < genders["男"] / RESIDENTS < 0.55
    assert set(population["hukou_type"].to_pylist()) == {
        "本地城镇",
        "本地农村",
        "外地城镇",
        "外地农村",
    }


def test_every_district_and_industry_appears_in_proportion(city: dict[str, CityDataset]) -> None:
    districts = collections.Counter(city["population"].table["district"].to_pylist())
    assert set(districts) == set(DISTRICTS)
    for district, weight in zip(DISTRICTS, DISTRICT_WEIGHTS):
        assert abs(districts[district] - weight * RESIDENTS) <= 1
    assert len(set(DISTRICT_WEIGHTS)) > 1
    enterprises = city["enterprises"].table
    assert set(enterprises["district"].to_pylist()) == set(DISTRICTS)
    assert set(enterprises["industry"].to_pylist()) == set(INDUSTRIES)
    assert len(INDUSTRY_WEIGHTS) == len(INDUSTRIES)


def test_small_city_still_has_every_district_and_industry() -> None:
    small = generate_city(100, seed=3)
    assert set(small["population"].table["district"].to_pylist()) == set(DISTRICTS)
    assert small["enterprises"].table.num_rows == 20
    assert set(small["enterprises"].table["industry"].to_pylist()) == set(INDUSTRIES)


def test_text_columns_are_valid_utf8_chinese(city: dict[str, CityDataset]) -> None:
    for dataset in city.values():
        dataset.table.validate(full=True)  # includes UTF-8 validity of every string
    population, enterprises = city["population"].table, city["enterprises"].table
    assert all(CHINESE_PERSON_NAME.match(name) for name in population["name"].to_pylist())
    assert all(d in DISTRICTS for d in population["district"].to_pylist())
    assert all(CHINESE.match(d) for d in DISTRICTS) and all(len(d) == 3 for d in DISTRICTS)
    company = re.compile(rf"^({'|'.join(DISTRICTS)})[\u4e00-\u9fff]+(股份)?有限公司$")
    for name, district in zip(enterprises["name"].to_pylist(), enterprises["district"].to_pylist()):
        assert company.match(name) and name.startswith(district), name
    assert all(re.match(r"^[\u4e00-\u9fff、，]+$", industry) for industry in INDUSTRIES)


def test_district_by_age_band_has_small_cells_for_suppression(city: dict[str, CityDataset]) -> None:
    population = city["population"].table
    bands = np.minimum(ages(population) // 10, 9)
    cells = collections.Counter(zip(population["district"].to_pylist(), bands.tolist()))
    assert len(cells) == len(DISTRICTS) * 10
    sizes = np.array(list(cells.values()))
    assert (sizes < 10).sum() >= 1
    assert (sizes >= 30).mean() > 0.85


def test_write_city_round_trips_through_parquet(tmp_path: pathlib.Path) -> None:
    paths = write_city(tmp_path / "city", 2_000, seed=5)
    expected = generate_city(2_000, seed=5)
    assert list(paths) == list(expected)
    for name, path in paths.items():
        assert path == tmp_path / "city" / f"{name}.parquet"
        assert pq.read_table(path).equals(expected[name].table), name


@pytest.mark.parametrize("residents", [0, 99, 50_000_001])
def test_city_size_out_of_range_is_refused_with_the_range(residents: int) -> None:
    with pytest.raises(ValueError, match="between 100 and 50000000"):
        generate_city(residents)


def test_residents_must_be_an_integer() -> None:
    with pytest.raises(TypeError, match="whole number"):
        generate_city(2_000.0)  # type: ignore[arg-type]
    assert generate_city(np.int64(200))["population"].table.num_rows == 200


def test_enterprises_are_founded_before_they_close_and_employers_still_exist(
    city: dict[str, CityDataset],
) -> None:
    firms = city["enterprises"].table.to_pylist()
    employers = set(city["social_insurance"].table.column("credit_code").to_pylist())
    closed = [f for f in firms if f["deregistered"] is not None]
    assert 0 < len(closed) < len(firms)
    for f in firms:
        assert f["established"] <= REFERENCE_DATE
        if f["deregistered"] is not None:
            assert f["established"] < f["deregistered"] <= REFERENCE_DATE
            assert f["credit_code"] not in employers
