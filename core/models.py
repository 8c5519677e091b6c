# core has no models; this module is what makes `migrate` send core its post_migrate signal
# (Django skips apps without one), on which core creates the cache table (see core/apps.py).
