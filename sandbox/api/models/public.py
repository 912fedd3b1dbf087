"""What anyone may read without a token: the catalog, the fees, the register, the log's head."""

from __future__ import annotations

from pydantic import Field

from sandbox.api.models.catalog import Dataset
from sandbox.api.models.common import Open
from sandbox.api.models.pricing import PriceCaps, PriceSchedule


class PublicDataset(Dataset):
    department: str = Field(description="The name of the department that provides it")


class PublicDatasets(Open):
    datasets: list[PublicDataset]


class Fees(Open):
    schedule: PriceSchedule | None = Field(description="The schedule in force; null before one")
    caps: PriceCaps | None = Field(description="The maximum fees in force, if recorded")


class RegisteredDataset(Open):
    name: str
    title: str


class RegisteredContract(Open):
    contract_id: str
    operator_name: str
    license_no: str | None
    datasets: list[RegisteredDataset]
    purpose_class: str = Field(description="commercial or public_interest")
    valid_from: str
    valid_to: str


class MonthFees(Open):
    period: str = Field(description="YYYY-MM, Beijing time")
    total: str = Field(description="Decimal string of yuan: every operator together")


class Register(Open):
    contracts: list[RegisteredContract] = Field(description="Contracts in force")
    fees_by_month: list[MonthFees]
