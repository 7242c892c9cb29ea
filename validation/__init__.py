"""The validation checks (scoring) and the script that writes RESULTS.md (run_validation)."""
