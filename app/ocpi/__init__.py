"""One OCPI 2.2.1 (or 2.1.1) platform per CPO, under /ocpi/peer/{cpo_id}/…"""
