"""Wire protocols only: no Django models, no settings. Clients take explicit config objects."""
