"""Contract test servers: CRMs as their API documentation describes them, on loopback."""
