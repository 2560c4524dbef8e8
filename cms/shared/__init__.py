"""State kept outside git that several server instances share: one query layer over SQLite (the
embedded default) and PostgreSQL (``CMS_DATABASE_URL``), and the leases that let one instance at
a time run a background job."""
