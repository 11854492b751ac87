"""Charging domain: sessions, CDRs and tariff pricing (no protocol code)."""
