"""A deterministic synthetic city for the demo, tests and benchmarks.

Three datasets (population, enterprises, social insurance) with valid GB 11643 resident IDs and
GB 32100 credit codes, consistent keys and realistic shapes. Everything is vectorised with numpy
and pyarrow so that ten million residents generate in seconds.
The same ``(residents, seed)`` always yields identical tables. Area codes use the prefix 4399, a city
code GB/T 2260 does not assign, so no generated resident ID or credit code can belong to a real
person or company.
"""

from __future__ import annotations

import datetime as dt
import numbers
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DISTRICTS",
    "DISTRICT_WEIGHTS",
    "INDUSTRIES",
    "INDUSTRY_WEIGHTS",
    "MAX_RESIDENTS",
    "MIN_RESIDENTS",
    "REFERENCE_DATE",
    "CityDataset",
    "generate_city",
    "write_city",
]

# Ages are exact whole years on this day: age == REFERENCE_DATE.year - birth_date.year.
REFERENCE_DATE = dt.date(2024, 12, 31)
MIN_RESIDENTS = 100
# Above this the 18-character ID column would overflow Arrow's 32-bit string offsets.
MAX_RESIDENTS = 50_000_000


@dataclass(frozen=True)
class CityDataset:
    """One dataset of the synthetic city, with what the catalog needs to register it."""

    name: str
    title: str
    level: str
    columns: dict[str, dict[str, Any]]
    table: pa.Table
    provider: str = ""
    topic: str = ""
    description: str = ""


@dataclass(frozen=True)
class _District:
    name: str
    area_code: int
    population_weight: float
    enterprise_weight: float
    # Shares of 本地城镇, 本地农村, 外地城镇, 外地农村 among residents.
    hukou_shares: tuple[float, float, float, float]
    wage_factor: float


@dataclass(frozen=True)
class _Industry:
    name: str
    weight: float  # share of enterprises
    size_factor: float  # relative headcount of a typical enterprise
    wage_factor: float
    capital_factor: float
    keyword: str  # appears in company names


# 北山区 is deliberately tiny so that district x age-band tables show suppressed cells.
_DISTRICTS: tuple[_District, ...] = (
    _District("城关区", 439902, 0.20, 0.18, (0.70, 0.05, 0.15, 0.10), 1.15),
    _District("湖滨区", 439903, 0.17, 0.15, (0.62, 0.08, 0.18, 0.12), 1.10),
    _District("新城区", 439904, 0.16, 0.14, (0.50, 0.10, 0.22, 0.18), 1.00),
    _District("高新区", 439905, 0.13, 0.20, (0.40, 0.05, 0.35, 0.20), 1.35),
    _District("经开区", 439906, 0.12, 0.16, (0.30, 0.15, 0.20, 0.35), 0.95),
    _District("滨江区", 439907, 0.11, 0.09, (0.45, 0.20, 0.15, 0.20), 1.00),
    _District("南湖区", 439908, 0.08, 0.06, (0.35, 0.40, 0.10, 0.15), 0.85),
    _District("北山区", 439909, 0.03, 0.02, (0.15, 0.75, 0.03, 0.07), 0.70),
)

_INDUSTRIES: tuple[_Industry, ...] = (
    _Industry("制造业", 0.14, 3.0, 1.00, 1.5, "机械制造"),
    _Industry("批发和零售业", 0.26, 0.5, 0.80, 0.6, "商贸"),
    _Industry("信息传输、软件和信息技术服务业", 0.08, 1.2, 1.70, 1.0, "科技"),
    _Industry("建筑业", 0.07, 2.5, 0.95, 2.0, "建设工程"),
    _Industry("住宿和餐饮业", 0.08, 0.7, 0.65, 0.4, "餐饮管理"),
    _Industry("金融业", 0.02, 2.0, 1.80, 20.0, "投资"),
    _Industry("交通运输、仓储和邮政业", 0.05, 1.8, 1.00, 1.2, "物流"),
    _Industry("教育", 0.03, 2.0, 1.10, 0.8, "教育咨询"),
    _Industry("卫生和社会工作", 0.02, 2.5, 1.15, 1.0, "医疗健康"),
    _Industry("农、林、牧、渔业", 0.04, 0.8, 0.60, 0.8, "农业开发"),
    _Industry("房地产业", 0.04, 1.0, 1.20, 8.0, "房地产开发"),
    _Industry("租赁和商务服务业", 0.10, 0.6, 0.90, 1.0, "商务服务"),
    _Industry("科学研究和技术服务业", 0.04, 0.8, 1.40, 1.0, "技术服务"),
    _Industry("居民服务、修理和其他服务业", 0.03, 0.5, 0.70, 0.3, "家政服务"),
)

DISTRICTS: tuple[str, ...] = tuple(d.name for d in _DISTRICTS)
DISTRICT_WEIGHTS: tuple[float, ...] = tuple(d.population_weight for d in _DISTRICTS)
INDUSTRIES: tuple[str, ...] = tuple(i.name for i in _INDUSTRIES)
INDUSTRY_WEIGHTS: tuple[float, ...] = tuple(i.weight for i in _INDUSTRIES)

HUKOU_TYPES: tuple[str, ...] = ("本地城镇", "本地农村", "外地城镇", "外地农村")
GENDERS: tuple[str, ...] = ("女", "男")  # indexed by the male flag

# Population share per five-year band 0-4 … 95-99, then age 100; shaped after the 2020 census,
# shifted to the recent drop in births.
_AGE_BAND_SHARES = (
    4.0,
    5.6,
    6.2,
    5.6,
    5.2,
    5.6,
    7.6,
    8.2,
    6.8,
    7.0,
    8.4,
    8.2,
    6.6,
    5.4,
    4.2,
    2.8,
    1.7,
    0.95,
    0.35,
    0.08,
)
_AGE_100_SHARE = 0.004

# Surnames with approximate shares (percent) of the national population.
_SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.1),
    ("李", 7.0),
    ("张", 6.7),
    ("刘", 5.4),
    ("陈", 4.5),
    ("杨", 3.1),
    ("黄", 2.2),
    ("赵", 2.0),
    ("吴", 2.0),
    ("周", 1.9),
    ("徐", 1.5),
    ("孙", 1.5),
    ("马", 1.3),
    ("朱", 1.3),
    ("胡", 1.2),
    ("郭", 1.2),
    ("何", 1.1),
    ("林", 1.0),
    ("罗", 1.0),
    ("高", 1.0),
    ("郑", 0.8),
    ("梁", 0.8),
    ("谢", 0.7),
    ("宋", 0.7),
    ("唐", 0.7),
    ("许", 0.6),
    ("韩", 0.6),
    ("冯", 0.6),
    ("邓", 0.6),
    ("曹", 0.6),
    ("彭", 0.5),
    ("曾", 0.5),
    ("肖", 0.5),
    ("田", 0.5),
    ("董", 0.5),
    ("袁", 0.4),
    ("潘", 0.4),
    ("于", 0.4),
    ("蒋", 0.4),
    ("蔡", 0.4),
    ("余", 0.4),
    ("杜", 0.4),
    ("叶", 0.4),
    ("程", 0.4),
    ("苏", 0.3),
    ("魏", 0.3),
    ("吕", 0.3),
    ("丁", 0.3),
    ("任", 0.3),
    ("沈", 0.3),
    ("姚", 0.3),
    ("卢", 0.3),
    ("姜", 0.3),
    ("崔", 0.3),
    ("钟", 0.3),
    ("谭", 0.3),
    ("陆", 0.3),
    ("汪", 0.3),
    ("范", 0.3),
    ("金", 0.3),
    ("石", 0.3),
    ("廖", 0.3),
    ("贾", 0.3),
    ("夏", 0.3),
    ("韦", 0.3),
    ("付", 0.3),
    ("方", 0.3),
    ("白", 0.2),
    ("邹", 0.2),
    ("孟", 0.2),
    ("熊", 0.2),
    ("秦", 0.2),
    ("邱", 0.2),
    ("江", 0.2),
    ("尹", 0.2),
    ("薛", 0.2),
    ("闫", 0.2),
    ("段", 0.2),
    ("雷", 0.2),
    ("侯", 0.2),
    ("龙", 0.2),
    ("史", 0.2),
    ("陶", 0.2),
    ("黎", 0.2),
    ("贺", 0.2),
    ("顾", 0.2),
    ("毛", 0.2),
    ("郝", 0.2),
    ("龚", 0.2),
    ("邵", 0.2),
    ("万", 0.2),
    ("钱", 0.2),
    ("严", 0.2),
    ("欧阳", 0.05),
    ("司马", 0.01),
    ("诸葛", 0.01),
    ("上官", 0.01),
)
_MALE_GIVEN = tuple(
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳建国志文博晨轩子睿泽然天振海峰成东亮"
)
_FEMALE_GIVEN = tuple(
    "芳娜敏静丽艳娟霞秀玲桂英萍红燕雪琳婷慧颖倩洁欣怡佳梦雨思涵诗悦晶瑶月兰凤梅琴蕾薇璐嘉妍淑春云莉"
)
_SINGLE_CHARACTER_NAME_SHARE = 0.25
_TRADE_NAME_CHARACTERS = tuple(
    "华盛鑫瑞恒达泰丰宏远博创联信通汇隆昌兴凯晨嘉源安和润卓越新腾宇众星光明锦绿金银天海江山云峰德正合力诚富利康健智慧优佳美乐"
)

_ENTERPRISES_PER_RESIDENT = 1 / 50
_MIN_ENTERPRISES = 20
_LISTED_COMPANY_HEADCOUNT = 500  # from here on a company is a 股份有限公司

# Monthly yuan; the social insurance base is clipped to the city's floor and ceiling.
_MAX_INCOME = 200_000
_CONTRIBUTION_FLOOR = 4_000
_CONTRIBUTION_CEILING = 30_000
_MAX_MONTHS_PAID = 480
_MAX_EMPLOYEES = 100_000
_MAX_REGISTERED_CAPITAL = 10_000_000_000
_WORKING_AGE = (18, 60)

# GB 11643-1999 (resident ID) check character: ISO 7064 MOD 11-2.
# Weights as float32 because the dot product is then fast and every sum (< 2**24) is exact.
_ID_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.float32)
_ID_CHECK_CHARS = np.frombuffer(b"10X98765432", dtype=np.uint8)
# GB 32100-2015 (unified social credit code): base-31 alphabet without I, O, Z, S, V.
_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_ALPHABET_BYTES = np.frombuffer(_CREDIT_ALPHABET.encode("ascii"), dtype=np.uint8)
_CREDIT_VALUES = np.zeros(256, dtype=np.int64)  # ASCII byte -> value in the alphabet
_CREDIT_VALUES[_CREDIT_ALPHABET_BYTES] = np.arange(31)
_CREDIT_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
# GB 11714-1997 organisation code, embedded in the credit code as characters 9-17.
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ORG_CHECK_CHARS = np.frombuffer(b"0123456789X0", dtype=np.uint8)  # indexed by 11 - (sum % 11)
_ORG_ID_CHARACTERS = 6  # after the "MA" prefix used for codes issued since 2015

_EPOCH = dt.date(1970, 1, 1)
_REFERENCE_DAYS = (REFERENCE_DATE - _EPOCH).days
_DAYS_PER_MONTH = 365.2425 / 12
_DAYS_TO_EIGHTEEN = int(18 * 365.2425)


def _population_columns() -> dict[str, dict[str, Any]]:
    return {
        "resident_id": {"role": "identifier", "description": "公民身份号码（脱敏）"},
        "name": {"role": "identifier", "description": "姓名"},
        "gender": {"role": "quasi_identifier", "description": "性别"},
        "birth_date": {"role": "quasi_identifier", "description": "出生日期"},
        "district": {"role": "attribute", "description": "常住地所在区"},
        "hukou_type": {"role": "attribute", "description": "户籍类型"},
        "income": {
            "role": "sensitive",
            "lower": 0,
            "upper": _MAX_INCOME,
            "description": "月收入（元）",
        },
    }


def _enterprise_columns() -> dict[str, dict[str, Any]]:
    return {
        "credit_code": {"role": "identifier"},
        "name": {"role": "identifier"},
        "industry": {"role": "attribute"},
        "district": {"role": "attribute"},
        "registered_capital": {"role": "sensitive", "lower": 0, "upper": _MAX_REGISTERED_CAPITAL},
        "employees": {"role": "sensitive", "lower": 0, "upper": _MAX_EMPLOYEES},
        "established": {"role": "attribute", "description": "成立日期"},
        "deregistered": {"role": "attribute", "description": "注销日期（存续为空）"},
    }


def _social_insurance_columns() -> dict[str, dict[str, Any]]:
    return {
        "resident_id": {"role": "identifier"},
        "credit_code": {"role": "identifier"},
        "contribution_base": {"role": "sensitive", "lower": 0, "upper": 50_000},
        "months_paid": {"role": "attribute", "lower": 0, "upper": 600},
        "insured_since": {"role": "quasi_identifier"},
    }


@dataclass(frozen=True)
class _Residents:
    """Per-resident arrays shared by the population and social insurance tables."""

    district: np.ndarray  # index into _DISTRICTS
    age: np.ndarray
    birth_days: np.ndarray  # days since 1970-01-01
    male: np.ndarray  # bool
    hukou: np.ndarray  # index into HUKOU_TYPES
    employed: np.ndarray  # bool: has a formal job with social insurance


@dataclass(frozen=True)
class _Enterprises:
    district: np.ndarray
    industry: np.ndarray  # index into _INDUSTRIES
    size_weight: np.ndarray  # relative chance of being a worker's employer


def generate_city(residents: int, seed: int = 0) -> dict[str, CityDataset]:
    """Generate the city's datasets, keyed by name: population, enterprises, social_insurance."""
    _check_residents(residents)
    residents = int(residents)
    rng = np.random.default_rng(seed)
    people = _sample_residents(rng, residents)
    firms = _sample_enterprises(
        rng, max(_MIN_ENTERPRISES, round(residents * _ENTERPRISES_PER_RESIDENT))
    )
    workers = np.flatnonzero(people.employed)
    employer = rng.choice(len(firms.size_weight), size=len(workers), p=firms.size_weight)
    income = _incomes(rng, people, workers, firms.industry[employer])
    resident_ids = _resident_ids(rng, people)
    credit_codes = _credit_codes(rng, firms.district)
    population = _population_table(rng, people, resident_ids, income)
    insured_per_firm = np.bincount(employer, minlength=len(firms.district))
    enterprises = _enterprise_table(rng, firms, credit_codes, insured_per_firm)
    # Drawn apart, so that adding them changed no value of the other columns or datasets.
    for name, dates in _lifespans(np.random.default_rng([seed, 2]), firms, insured_per_firm):
        enterprises = enterprises.append_column(name, dates)
    insurance = _social_insurance_table(
        rng, people, workers, income[workers], resident_ids, credit_codes, employer
    )
    return {
        "population": CityDataset(
            name="population",
            title="人口基础信息库",
            level="L3",
            columns=_population_columns(),
            table=population,
            provider="公安局",
            topic="人口",
            description="常住人口的户籍、性别、出生日期、所在区和收入（合成数据）",
        ),
        "enterprises": CityDataset(
            name="enterprises",
            title="法人单位基础信息库",
            level="L2",
            columns=_enterprise_columns(),
            table=enterprises,
            provider="市场监督管理局",
            topic="企业",
            description="法人单位的行业、所在区、成立和注销日期、从业人数（合成数据）",
        ),
        "social_insurance": CityDataset(
            name="social_insurance",
            title="社会保险参保信息库",
            level="L3",
            columns=_social_insurance_columns(),
            table=insurance,
            provider="人力资源和社会保障局",
            topic="社会保障",
            description="参保人员的险种、参保单位和缴费基数（合成数据）",
        ),
    }


def write_city(directory: pathlib.Path, residents: int, seed: int = 0) -> dict[str, pathlib.Path]:
    """Generate the city and write one ``<name>.parquet`` per dataset into ``directory``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, pathlib.Path] = {}
    for name, dataset in generate_city(residents, seed).items():
        path = directory / f"{name}.parquet"
        pq.write_table(dataset.table, path)
        paths[name] = path
    return paths


def _check_residents(residents: int) -> None:
    if isinstance(residents, bool) or not isinstance(residents, numbers.Integral):
        raise TypeError(
            f"residents must be an int, got {type(residents).__name__}; pass a whole number"
        )
    if not MIN_RESIDENTS <= residents <= MAX_RESIDENTS:
        raise ValueError(
            f"residents must be between {MIN_RESIDENTS} and {MAX_RESIDENTS}, got {residents}; "
            "choose a city size in that range"
        )


# --- residents -------------------------------------------------------------------------------


def _sample_residents(rng: np.random.Generator, count: int) -> _Residents:
    district = _allocate(rng, count, [d.population_weight for d in _DISTRICTS])
    age = rng.choice(101, size=count, p=_age_distribution())
    male = rng.random(count) < _male_share(age)
    hukou = _sample_by_group(rng, district, [d.hukou_shares for d in _DISTRICTS])
    return _Residents(
        district=district,
        age=age,
        birth_days=_birth_days(rng, age),
        male=male,
        hukou=hukou,
        employed=rng.random(count) < _employment_rate(age, hukou),
    )


def _age_distribution() -> np.ndarray:
    single_years = np.repeat(np.array(_AGE_BAND_SHARES) / 5, 5)
    weights = np.append(single_years, _AGE_100_SHARE)
    shares: np.ndarray = weights / weights.sum()
    return shares


def _male_share(age: np.ndarray) -> np.ndarray:
    # Women outlive men, so the sex ratio falls in old age.
    return np.where(age < 50, 0.515, 0.515 - (age - 50) * 0.0023)


def _birth_days(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    """A uniform day in the birth year, so that age == reference year - birth year exactly."""
    year = REFERENCE_DATE.year - age
    start = (year - 1970).astype("datetime64[Y]")
    first = start.astype("datetime64[D]").astype(np.int64)
    following = (start + 1).astype("datetime64[D]").astype(np.int64)
    return first + (rng.random(len(age)) * (following - first)).astype(np.int64)


def _employment_rate(age: np.ndarray, hukou: np.ndarray) -> np.ndarray:
    # Formal employment with social insurance: lower for students, near-retirees and rural hukou.
    by_hukou = np.array([0.68, 0.50, 0.74, 0.62])[hukou]
    by_age = np.select([age < 18, age <= 22, age <= 54, age <= 60], [0.0, 0.55, 1.0, 0.75], 0.0)
    rate: np.ndarray = by_hukou * by_age
    return rate


def _incomes(
    rng: np.random.Generator, people: _Residents, workers: np.ndarray, worker_industry: np.ndarray
) -> np.ndarray:
    """Monthly income in whole yuan: wages for workers, informal pay, pensions, or nothing."""
    count = len(people.age)
    income = np.zeros(count, dtype=np.float64)
    low, high = _WORKING_AGE
    working_age = (people.age >= low) & (people.age <= high)
    urban = (people.hukou == 0) | (people.hukou == 2)
    district_factor = np.array([d.wage_factor for d in _DISTRICTS])[people.district]

    median = (
        6000.0
        * district_factor[workers]
        * np.array([i.wage_factor for i in _INDUSTRIES])[worker_industry]
        * _career_factor(people.age[workers])
        * np.where(people.male[workers], 1.0, 0.88)
    )
    income[workers] = median * rng.lognormal(0.0, 0.55, size=len(workers))

    informal = working_age & ~people.employed & (rng.random(count) < 0.5)
    income[informal] = (
        2500.0 * district_factor[informal] * rng.lognormal(0.0, 0.6, size=int(informal.sum()))
    )

    elderly = people.age > high
    urban_pension = elderly & urban & (rng.random(count) < 0.85)
    income[urban_pension] = 3800.0 * rng.lognormal(0.0, 0.35, size=int(urban_pension.sum()))
    rural_pension = elderly & ~urban & (rng.random(count) < 0.45)
    income[rural_pension] = 250.0 * rng.lognormal(0.0, 0.3, size=int(rural_pension.sum()))

    return np.clip(np.rint(income), 0, _MAX_INCOME).astype(np.int64)


def _career_factor(age: np.ndarray) -> np.ndarray:
    return np.select([age < 25, age < 35, age <= 50], [0.65, 0.90, 1.0], 0.90)


def _resident_ids(rng: np.random.Generator, people: _Residents) -> pa.Array:
    """GB 11643 IDs: area code, birth date, a sequence number whose parity is the sex, check char."""
    area_codes = np.array([d.area_code for d in _DISTRICTS], dtype=np.int64)
    body = np.hstack(
        [
            _digits(area_codes, 6)[people.district],
            _date_digits(people.birth_days),
            _digits(np.arange(1000), 3)[_sequence_numbers(rng, people)],
        ]
    )
    check = _ID_CHECK_CHARS[(body.astype(np.float32) @ _ID_WEIGHTS).astype(np.int64) % 11]
    return _ascii_strings(np.hstack([body + ord("0"), check[:, None]]))


def _sequence_numbers(rng: np.random.Generator, people: _Residents) -> np.ndarray:
    """Distinct 3-digit sequence numbers within each (district, birth date, sex): odd for men."""
    slots = 499  # 001..997 odd for men, 002..998 even for women
    key = (
        people.district * 100_000 + (people.birth_days - people.birth_days.min())
    ) * 2 + people.male
    order = np.argsort(key.astype(np.int32))
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    group_sizes = np.diff(np.r_[starts, len(key)])
    if group_sizes.max() > slots:
        raise ValueError(
            "too many synthetic residents share a district, birth date and sex to give each a "
            "distinct ID; generate fewer residents"
        )
    group = np.repeat(np.arange(len(starts)), group_sizes)
    rank = np.arange(len(key)) - starts[group]
    # A random starting slot per group keeps sequence numbers from all starting at 001.
    slot = (rank + rng.integers(0, slots, size=len(starts))[group]) % slots
    sequence = np.empty(len(key), dtype=np.int64)
    sequence[order] = 2 * slot + np.where(people.male[order], 1, 2)
    return sequence


def _population_table(
    rng: np.random.Generator, people: _Residents, resident_ids: pa.Array, income: np.ndarray
) -> pa.Table:
    return pa.table(
        {
            "resident_id": resident_ids,
            "name": _person_names(rng, people.male),
            "gender": _take(GENDERS, people.male.astype(np.int64)),
            "birth_date": _dates(people.birth_days),
            "district": _take(DISTRICTS, people.district),
            "hukou_type": _take(HUKOU_TYPES, people.hukou),
            "income": pa.array(income, type=pa.int64()),
        }
    )


def _person_names(rng: np.random.Generator, male: np.ndarray) -> pa.Array:
    count = len(male)
    surnames = [s for s, _ in _SURNAMES]
    shares = np.array([w for _, w in _SURNAMES])
    surname = rng.choice(len(surnames), size=count, p=shares / shares.sum())
    # One pool: male characters, then female characters, then "" for single-character given names.
    pool = _MALE_GIVEN + _FEMALE_GIVEN + ("",)
    males, females = len(_MALE_GIVEN), len(_FEMALE_GIVEN)

    def given_character() -> np.ndarray:
        return np.where(
            male, rng.integers(0, males, count), males + rng.integers(0, females, count)
        )

    first = given_character()
    second = np.where(
        rng.random(count) < _SINGLE_CHARACTER_NAME_SHARE, len(pool) - 1, given_character()
    )
    return _join(_take(surnames, surname), _take(pool, first), _take(pool, second))


# --- enterprises -----------------------------------------------------------------------------


def _sample_enterprises(rng: np.random.Generator, count: int) -> _Enterprises:
    district = _allocate(rng, count, [d.enterprise_weight for d in _DISTRICTS])
    industry = _allocate(rng, count, [i.weight for i in _INDUSTRIES])
    # Firm sizes are heavy-tailed: most are small, a few employ a large share of the workforce.
    size = np.array([i.size_factor for i in _INDUSTRIES])[industry] * rng.lognormal(0.0, 1.5, count)
    return _Enterprises(district=district, industry=industry, size_weight=size / size.sum())


def _credit_codes(rng: np.random.Generator, district: np.ndarray) -> pa.Array:
    """GB 32100 codes: 9 (market regulator), 1 (enterprise), area code, organisation code, check char."""
    count = len(district)
    area = np.array([d.area_code for d in _DISTRICTS], dtype=np.int64)[district]
    serial = rng.choice(31**_ORG_ID_CHARACTERS, size=count, replace=False)  # unique codes
    serial_values = _digits(serial, _ORG_ID_CHARACTERS, base=31)
    prefix_values = np.tile(
        np.array([_CREDIT_ALPHABET.index(c) for c in "MA"], dtype=np.uint8), (count, 1)
    )
    org_values = np.hstack([prefix_values, serial_values])
    org_chars = _CREDIT_ALPHABET_BYTES[org_values]
    org_check = _ORG_CHECK_CHARS[11 - (_org_code_values(org_chars) @ _ORG_WEIGHTS) % 11]
    head = np.tile(np.frombuffer(b"91", dtype=np.uint8), (count, 1))
    chars = np.hstack([head, _digits(area, 6) + ord("0"), org_chars, org_check[:, None]])
    check = (31 - (_CREDIT_VALUES[chars] @ _CREDIT_WEIGHTS) % 31) % 31
    return _ascii_strings(np.hstack([chars, _CREDIT_ALPHABET_BYTES[check][:, None]]))


def _org_code_values(chars: np.ndarray) -> np.ndarray:
    """GB 11714 character values: digits as themselves, A=10 … Z=35."""
    values = chars.astype(np.int64)
    return np.where(values >= ord("A"), values - ord("A") + 10, values - ord("0"))


def _enterprise_table(
    rng: np.random.Generator, firms: _Enterprises, credit_codes: pa.Array, insured: np.ndarray
) -> pa.Table:
    count = len(firms.district)
    # Headcount includes staff without social insurance here (part-timers, those insured elsewhere).
    employees = np.minimum(
        insured + rng.binomial(insured, 0.15) + rng.geometric(0.5, count), _MAX_EMPLOYEES
    )
    capital_factor = np.array([i.capital_factor for i in _INDUSTRIES])[firms.industry]
    capital = 100_000.0 * employees**0.9 * capital_factor * rng.lognormal(0.0, 1.0, count)
    # Registered capital is subscribed in whole 万元.
    capital = np.clip(np.rint(capital / 10_000) * 10_000, 10_000, _MAX_REGISTERED_CAPITAL).astype(
        np.int64
    )
    return pa.table(
        {
            "credit_code": credit_codes,
            "name": _company_names(rng, firms, employees),
            "industry": _take(INDUSTRIES, firms.industry),
            "district": _take(DISTRICTS, firms.district),
            "registered_capital": pa.array(capital, type=pa.int64()),
            "employees": pa.array(employees.astype(np.int64), type=pa.int64()),
        }
    )


# Enterprises founded up to this many years before the reference date, most recently; and
# the yearly chance that one closes, higher where firms are small (shops, restaurants).
_OLDEST_FIRM_YEARS = 35
_MEAN_FIRM_AGE_YEARS = 9.0
_BASE_EXIT_RATE = 0.05


def _lifespans(
    rng: np.random.Generator, firms: _Enterprises, insured: np.ndarray
) -> list[tuple[str, pa.Array]]:
    """Each enterprise's date of establishment and, for those that closed before the
    reference date, of deregistration (None while it exists). An enterprise with insured
    workers on the reference date still exists."""
    count = len(firms.district)
    age_years = np.minimum(rng.exponential(_MEAN_FIRM_AGE_YEARS, count), _OLDEST_FIRM_YEARS)
    established = _REFERENCE_DAYS - np.rint(age_years * 365.25).astype(np.int64)
    size = np.array([i.size_factor for i in _INDUSTRIES])[firms.industry]
    rate = _BASE_EXIT_RATE / np.sqrt(size)
    lifetime = np.rint(rng.exponential(1.0 / rate) * 365.25).astype(np.int64) + 1
    closed = (established + lifetime <= _REFERENCE_DAYS) & (insured == 0)
    deregistered = pa.array(
        np.where(closed, established + lifetime, 0).astype(np.int32), mask=~closed
    ).view(pa.date32())
    return [("established", _dates(established)), ("deregistered", deregistered)]


def _company_names(
    rng: np.random.Generator, firms: _Enterprises, employees: np.ndarray
) -> pa.Array:
    """Names like 湖滨区华盛科技有限公司: district, two-character trade name, line of business, form."""
    count = len(firms.district)
    trade = _TRADE_NAME_CHARACTERS
    forms = ("有限公司", "股份有限公司")
    return _join(
        _take(DISTRICTS, firms.district),
        _take(trade, rng.integers(0, len(trade), count)),
        _take(trade, rng.integers(0, len(trade), count)),
        _take([i.keyword for i in _INDUSTRIES], firms.industry),
        _take(forms, (employees >= _LISTED_COMPANY_HEADCOUNT).astype(np.int64)),
    )


# --- social insurance ------------------------------------------------------------------------


def _social_insurance_table(
    rng: np.random.Generator,
    people: _Residents,
    workers: np.ndarray,
    worker_income: np.ndarray,
    resident_ids: pa.Array,
    credit_codes: pa.Array,
    employer: np.ndarray,
) -> pa.Table:
    count = len(workers)
    # The base follows declared wages, with reporting noise, within the city's floor and ceiling.
    base = np.clip(
        np.rint(worker_income * rng.lognormal(0.0, 0.08, count)),
        _CONTRIBUTION_FLOOR,
        _CONTRIBUTION_CEILING,
    ).astype(np.int64)
    adult_days = np.maximum(_REFERENCE_DAYS - (people.birth_days[workers] + _DAYS_TO_EIGHTEEN), 1)
    span_days = np.maximum((adult_days * rng.uniform(0.15, 1.0, count)).astype(np.int64), 1)
    # Gaps between jobs mean fewer months paid than months since first insured.
    months_covered = span_days / _DAYS_PER_MONTH * rng.uniform(0.75, 1.0, count)
    months = np.clip(np.rint(months_covered), 1, _MAX_MONTHS_PAID)
    return pa.table(
        {
            "resident_id": resident_ids.take(pa.array(workers)),
            "credit_code": credit_codes.take(pa.array(employer)),
            "contribution_base": pa.array(base, type=pa.int64()),
            "months_paid": pa.array(months.astype(np.int64), type=pa.int64()),
            "insured_since": _dates(_REFERENCE_DAYS - span_days),
        }
    )


# --- vectorised helpers ----------------------------------------------------------------------


def _allocate(rng: np.random.Generator, count: int, weights: list[float]) -> np.ndarray:
    """Category per row in exact proportion to ``weights`` (each category at least once), shuffled.

    Exact counts keep small categories present in small cities and make sizes reproducible.
    """
    shares = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    quota = shares * count
    counts = np.maximum(np.floor(quota).astype(np.int64), 1)
    remainder = count - counts.sum()
    if remainder > 0:
        counts[np.argsort(-(quota - np.floor(quota)), kind="stable")[:remainder]] += 1
    elif remainder < 0:
        for index in np.argsort(-counts, kind="stable")[:-remainder]:
            counts[index] -= 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def _sample_by_group(
    rng: np.random.Generator, group: np.ndarray, shares: list[tuple[float, ...]]
) -> np.ndarray:
    """One category per row, drawn from the distribution ``shares[group[row]]``."""
    draws = rng.random(len(group))
    category = np.empty(len(group), dtype=np.int64)
    for index, row_shares in enumerate(shares):
        cumulative = np.cumsum(row_shares) / np.sum(row_shares)
        members = group == index
        category[members] = np.searchsorted(cumulative[:-1], draws[members], side="right")
    return category


def _date_digits(days: np.ndarray) -> np.ndarray:
    """Rows of YYYYMMDD digit values, computed once per distinct day and gathered."""
    first = int(days.min())
    calendar = np.arange(first, int(days.max()) + 1).astype("datetime64[D]")
    months = calendar.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (calendar - months.astype("datetime64[D]")).astype(np.int64) + 1
    digits: np.ndarray = _digits(year * 10_000 + month * 100 + day, 8)[days - first]
    return digits


def _digits(values: np.ndarray, width: int, base: int = 10) -> np.ndarray:
    """Rows of ``width`` digit values (most significant first) as uint8."""
    powers = base ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(values, dtype=np.int64)[:, None] // powers) % base).astype(np.uint8)


def _ascii_strings(chars: np.ndarray) -> pa.Array:
    """A string array from a (rows, width) matrix of ASCII bytes, without a Python loop."""
    rows, width = chars.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _take(values: tuple[str, ...] | list[str], indices: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(np.asarray(indices, dtype=np.int64)))


def _join(*pieces: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*pieces, "")


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32)).view(pa.date32())
