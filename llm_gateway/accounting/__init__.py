"""Token accounting: what each call used, as its backend reported it (ledger, budgets next)."""
