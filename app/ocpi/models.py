"""OCPI-side tables (peers, pushed tokens, sessions, CDRs, traffic log). Imported by app.db so
every process creates them; every per-CPO table has a `cpo_id` column so teardown removes it."""
