"""The reference website: a static site of the published comparisons, built from the public
API only (as any frontend would be), kept up to date incrementally, rebuilt by a webhook."""
