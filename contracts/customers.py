"""Customer master data from the CRM: one row per customer."""

from datetime import date

import pandera.polars as pa
import polars as pl


class Customers(pa.DataFrameModel):
    """One row per customer, as exported nightly by the CRM."""

    customer_id: int = pa.Field(unique=True, ge=1)
    email: str = pa.Field(
        str_matches=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"},
    )
    full_name: str = pa.Field(metadata={"pii": "PERSON", "redact": "mask"})
    phone: str = pa.Field(nullable=True, metadata={"pii": "PHONE_NUMBER", "redact": "replace"})
    country: str = pa.Field(isin=["US", "GB", "DE", "FR", "NL", "ES", "IT", "CA"])
    city: str = pa.Field(nullable=True)
    signup_date: pl.Date = pa.Field(ge=date(2000, 1, 1))
    last_order_date: pl.Date = pa.Field(nullable=True)
    lifetime_value: float = pa.Field(ge=0)
    orders_count: int = pa.Field(ge=0)
    segment: str = pa.Field(isin=["consumer", "small_business", "enterprise"])
    is_active: bool
    notes: str = pa.Field(nullable=True, metadata={"pii": "scan"})

    class Config:
        name = "customers"
        strict = True
        coerce = True
        metadata = {
            "version": "1.2.0",
            "owner": "crm-team",
            "description": "One row per customer, exported nightly from the CRM.",
            "on_invalid": "reject",
            "undeclared_pii": "redact",
        }
