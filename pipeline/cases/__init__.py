"""What happens after an automated decision: people review, items come down.

reviews.py    parked requests and appeals, resolved once by a reviewer
takedowns.py  published items taken down when consent is revoked or a public figure is added

May import likeness, media, runtime, audit and transport. Future operator flows (user reports,
account enforcement) belong here.
"""
