"""What every table of the SQL store shares: the declarative ``Base`` (one metadata, with
explicit constraint names), the column lengths and the row-id type.

Table modules import this and nothing of each other; ``compliance.models`` gathers them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase

# Explicit constraint names: migrations can then drop/alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS_LEN = 320  # RFC 5321 path limit, with room for what qmail lets through
DOMAIN_LEN = 255
SUBJECT_LEN = 998  # RFC 5322 line limit
DETAIL_LEN = 1000
TYPE_LEN = 255  # RFC 6838: 127 + '/' + 127
FILENAME_LEN = 255
EXTENSION_LEN = 32
MATTER_LEN = 200
CRYPTO_LEN = 64

# Child tables outgrow 2**31 rows at a large ISP; SQLite only autoincrements INTEGER.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
