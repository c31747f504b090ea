"""What the status page stand-in shows: products, regions and their noise.

Names follow CLOUDFLARE.md section 8: products are children of "Cloudflare Sites and
Services" and data centres are named like ``Amsterdam, Netherlands - (AMS)`` under
region groups. The stand-in shows 12 products and 39 data centres, not the ~478
components of the real page.
"""

from __future__ import annotations

PAGE_ID = "yh6f0r4529hb"
PRODUCTS_GROUP = "Cloudflare Sites and Services"
PRODUCTS = (
    "API",
    "Dashboard",
    "Workers",
    "Workers KV",
    "D1",
    "R2",
    "Queues",
    "Pages",
    "Durable Objects",
    "Workers AI",
    "WARP",
    "CDN/Cache",
)
REGIONS = {
    "Africa": (
        "Cairo, Egypt - (CAI)",
        "Johannesburg, South Africa - (JNB)",
        "Lagos, Nigeria - (LOS)",
        "Nairobi, Kenya - (NBO)",
    ),
    "Asia": (
        "Hong Kong - (HKG)",
        "Mumbai, India - (BOM)",
        "Osaka, Japan - (KIX)",
        "Seoul, South Korea - (ICN)",
        "Singapore, Singapore - (SIN)",
        "Tokyo, Japan - (NRT)",
    ),
    "Europe": (
        "Amsterdam, Netherlands - (AMS)",
        "Frankfurt, Germany - (FRA)",
        "London, United Kingdom - (LHR)",
        "Madrid, Spain - (MAD)",
        "Milan, Italy - (MXP)",
        "Paris, France - (CDG)",
        "Stockholm, Sweden - (ARN)",
        "Warsaw, Poland - (WAW)",
    ),
    "Latin America & the Caribbean": (
        "Bogotá, Colombia - (BOG)",
        "Buenos Aires, Argentina - (EZE)",
        "Lima, Peru - (LIM)",
        "Santiago, Chile - (SCL)",
        "São Paulo, Brazil - (GRU)",
    ),
    "Middle East": (
        "Doha, Qatar - (DOH)",
        "Dubai, United Arab Emirates - (DXB)",
        "Riyadh, Saudi Arabia - (RUH)",
        "Tel Aviv, Israel - (TLV)",
    ),
    "North America": (
        "Ashburn, VA, United States - (IAD)",
        "Chicago, IL, United States - (ORD)",
        "Dallas, TX, United States - (DFW)",
        "Los Angeles, CA, United States - (LAX)",
        "Miami, FL, United States - (MIA)",
        "Newark, NJ, United States - (EWR)",
        "Seattle, WA, United States - (SEA)",
        "Toronto, ON, Canada - (YYZ)",
    ),
    "Oceania": (
        "Auckland, New Zealand - (AKL)",
        "Melbourne, VIC, Australia - (MEL)",
        "Perth, WA, Australia - (PER)",
        "Sydney, NSW, Australia - (SYD)",
    ),
}
# Data centres that are never fully operational: maintenance and re-routing noise.
MAINTENANCE = (
    "Lima, Peru - (LIM)",
    "Warsaw, Poland - (WAW)",
    "Perth, WA, Australia - (PER)",
)
REROUTED = ("Bogotá, Colombia - (BOG)", "Riyadh, Saudi Arabia - (RUH)")
HOUR = 3600.0
DAY = 86_400.0
SEVERITY = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
