"""The demo's payment database: schema (``schema.sql``, ``constraints.sql``) and seeding."""

from paymigrate_dev.demo.seed import SeedResult, create_schema, seed

__all__ = ["SeedResult", "create_schema", "seed"]
