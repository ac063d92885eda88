"""The evaluation harness behind ``sas-lens eval``: config, planning, a resumable cell store, runners, results.

Also the measurements it is made of: A/B behaviour probability (:mod:`.behaviour`), capability kept
(:mod:`.capability`) and open-ended answers (:mod:`.open_ended`).
"""
