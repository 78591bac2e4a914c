"""Marking what was made here, and checking marks later.

watermarks.py           visible mark and invisible (DWT-DCT-SVD) watermark
marking.py              both marks drawn where a video is first encoded (generate), else by provenance
content_credentials.py  C2PA manifests: signing and reading
ledger.py               which watermark id belongs to which request (audit table)
verification.py         a video file -> manifest, watermark and audit record (`trustreel verify`)
dev_certificates.py     a throwaway signing chain for development

May import media and audit.
"""
