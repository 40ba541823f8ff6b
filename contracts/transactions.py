"""Card transactions; ``customer_id`` references ``customers.customer_id``."""

from typing import Annotated

import pandera.polars as pa
import polars as pl


class Transactions(pa.DataFrameModel):
    """One row per settled card transaction."""

    transaction_id: str = pa.Field(unique=True, str_matches=r"^TX-[0-9]{10}$")
    customer_id: int = pa.Field(ge=1, metadata={"references": "customers.customer_id"})
    occurred_at: Annotated[pl.Datetime, "us", "UTC"]
    amount: float = pa.Field(gt=0, le=1_000_000)
    currency: str = pa.Field(isin=["USD", "EUR", "GBP"])
    merchant_category: str = pa.Field(str_length={"min_value": 4, "max_value": 4})
    card_number: str = pa.Field(metadata={"pii": "CREDIT_CARD", "redact": "mask"})
    ip_address: str = pa.Field(nullable=True, metadata={"pii": "IP_ADDRESS", "redact": "hash"})
    is_fraud: bool = pa.Field(nullable=True)

    class Config:
        name = "transactions"
        strict = True
        coerce = True
        metadata = {
            "version": "1.0.0",
            "owner": "payments-team",
            "description": "Settled card transactions, one row each.",
            "on_invalid": "reject",
            "undeclared_pii": "reject",
        }
