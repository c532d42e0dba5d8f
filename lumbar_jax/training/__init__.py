"""Training one stage: state, the pure step, losses, the loop and what it needs.

``loop.train_and_evaluate`` is the entry; ``step.train_step`` the one pure update, wrapped per
parallel mode by ``parallel``; ``schedule``, ``monitor``, ``writer`` and ``validation`` are the
loop's pieces; ``preemption`` and ``distributed`` deal with signals and several processes.
"""
