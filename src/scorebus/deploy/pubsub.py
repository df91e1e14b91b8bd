"""Topics and subscriptions: the way in, the way out, and where failures are kept.

Delivery is an explicit push subscription to the function's URL, not the
function's Eventarc trigger: the subscription an Eventarc trigger creates is
managed by Eventarc and cannot be given a dead-letter policy from Pulumi, so
an event that keeps failing would be retried until retention drops it. The
explicit subscription carries everything delivery needs:

- ``ack_deadline_seconds``: the consumers' worst-case batch time (see ``plan``);
- ``retry_policy``: Pub/Sub's exponential backoff between the consumers' bounds;
- ``dead_letter_policy``: after ``max_delivery_attempts`` the message goes to the
  dead-letter topic, whose own subscription keeps it (a topic without a
  subscription drops what is published to it);
- ``push_config.oidc_token``: each push carries a token signed for the push
  service account, the only identity allowed to invoke the function;
- ``expiration_policy.ttl = ""``: a quiet pipeline's subscription never expires
  (the default deletes it after 31 days without activity).

The push URL ends in ``/projects/P/topics/T``: functions-framework reads the
topic from the path when it turns the raw push body into a CloudEvent, and the
scorebus entry point routes the event to that topic's scorers.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from .plan import Delivery

RETENTION = "604800s"  # 7 days, Pub/Sub's maximum for a subscription


def duration(seconds: float) -> str:
    """A protobuf Duration string: ``12s``, ``0.5s``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def push_endpoint(uri: pulumi.Input[str], project: str, topic: str) -> pulumi.Output[str]:
    """The function's URL with the topic in its path."""
    return pulumi.Output.concat(uri, f"/projects/{project}/topics/{topic}")


def topic(
    name: str, topic_id: str, *, project: str, keep: bool, opts: pulumi.ResourceOptions
) -> gcp.pubsub.Topic:
    """A topic; ``keep`` retains what is published for 7 days even without a subscriber."""
    return gcp.pubsub.Topic(
        name,
        gcp.pubsub.TopicArgs(
            name=topic_id,
            project=project,
            message_retention_duration=RETENTION if keep else None,
            labels={"managed-by": "scorebus"},
        ),
        opts=opts,
    )


def keep_subscription(
    name: str,
    subscription_id: str,
    source: gcp.pubsub.Topic,
    *,
    project: str,
    opts: pulumi.ResourceOptions,
) -> gcp.pubsub.Subscription:
    """A pull subscription that keeps what reaches ``source`` (7 days, never expires)."""
    return gcp.pubsub.Subscription(
        name,
        gcp.pubsub.SubscriptionArgs(
            name=subscription_id,
            topic=source.id,
            project=project,
            ack_deadline_seconds=60,
            message_retention_duration=RETENTION,
            retain_acked_messages=False,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            labels={"managed-by": "scorebus"},
        ),
        opts=opts,
    )


def push_subscription(
    name: str,
    delivery: Delivery,
    source: gcp.pubsub.Topic,
    dead_letter: gcp.pubsub.Topic,
    *,
    function_uri: pulumi.Input[str],
    push_account: pulumi.Input[str],
    project: str,
    opts: pulumi.ResourceOptions,
) -> gcp.pubsub.Subscription:
    """The subscription that pushes ``delivery.topic`` to the function (see the module docstring)."""
    return gcp.pubsub.Subscription(
        name,
        gcp.pubsub.SubscriptionArgs(
            name=delivery.subscription,
            topic=source.id,
            project=project,
            ack_deadline_seconds=delivery.ack_deadline_s,
            message_retention_duration=RETENTION,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=duration(delivery.min_backoff_s),
                maximum_backoff=duration(delivery.max_backoff_s),
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=dead_letter.id,
                max_delivery_attempts=delivery.max_delivery_attempts,
            ),
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=push_endpoint(function_uri, project, delivery.topic),
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=push_account,
                    # Cloud Run checks the token's audience against the service's URL.
                    audience=function_uri,
                ),
            ),
            labels={"managed-by": "scorebus"},
        ),
        opts=opts,
    )
