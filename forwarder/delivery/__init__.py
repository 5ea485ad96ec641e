"""Delivery: from the queue to BigPanda, with batching, retries, rate limits and dead letters.

* :mod:`~forwarder.delivery.deliverer`: one sender per target, rebuilt on reload;
* :mod:`~forwarder.delivery.sender`: one target's loop: claim, lease, send, split;
* :mod:`~forwarder.delivery.outcome`: what each batch's answer does (ack, retry, dead letter,
  hold, pauses);
* :mod:`~forwarder.delivery.retry`: status and exception → retry, split or dead letter;
* :mod:`~forwarder.delivery.transport`: BigPanda v2, OIM, or the log (dry-run);
* :mod:`~forwarder.delivery.ratelimit`, :mod:`~forwarder.delivery.health`.
"""
