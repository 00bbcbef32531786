"""Order intake rules: pure functions that decide what a new order is before anyone calls.

Each rule has its own module (phone, duplicates, fraud, numbering, region, timezone) and
`crm_bridge.intake.order.intake` applies them all to a raw order.
"""
