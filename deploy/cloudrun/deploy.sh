#!/usr/bin/env bash
# Deploy reaper on Google Cloud Run functions: the service, the Cloud Tasks queue for follow-ups,
# a Cloud Scheduler job for sweeps, a Pub/Sub push subscription for instance-expired events, and
# the IAM bindings between them. Idempotent where gcloud allows; re-run after changing the image.
set -euo pipefail

PROJECT="${PROJECT:?set PROJECT to the Google Cloud project id}"
REGION="${REGION:-europe-west1}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/platform/reaper:0.1.0}"
SERVICE="${SERVICE:-reaper}"
QUEUE="${QUEUE:-reaper-follow-ups}"
TOPIC="${TOPIC:-instance-expired}"
CLOUDDC_ENDPOINT="${CLOUDDC_ENDPOINT:-https://clouddc.cn-east-3.myhuaweicloud.com}"
CLOUDDC_PROJECT_ID="${CLOUDDC_PROJECT_ID:?set CLOUDDC_PROJECT_ID to the Huawei project id}"
AK_SECRET="${AK_SECRET:-clouddc-ak}"   # Secret Manager secrets holding HUAWEICLOUD_SDK_AK / _SK
SK_SECRET="${SK_SECRET:-clouddc-sk}"
EVENT_KEY_SECRET="${EVENT_KEY_SECRET:-reaper-event-key}"
RUNTIME_SA="reaper-runtime@${PROJECT}.iam.gserviceaccount.com"
INVOKER_SA="reaper-invoker@${PROJECT}.iam.gserviceaccount.com"

gcloud config set project "${PROJECT}"

for account in reaper-runtime reaper-invoker; do
  gcloud iam service-accounts describe "${account}@${PROJECT}.iam.gserviceaccount.com" >/dev/null 2>&1 \
    || gcloud iam service-accounts create "${account}"
done

# Cloud Tasks retries every non-2xx, 4xx included: a bounded number of attempts ends a poison task.
gcloud tasks queues describe "${QUEUE}" --location="${REGION}" >/dev/null 2>&1 \
  || gcloud tasks queues create "${QUEUE}" --location="${REGION}" \
       --max-attempts=20 --max-retry-duration=3600s --min-backoff=2s --max-backoff=300s

# The key that signs reaper's own follow-ups: made once, kept in Secret Manager.
gcloud secrets describe "${EVENT_KEY_SECRET}" >/dev/null 2>&1 \
  || openssl rand -hex 32 | gcloud secrets create "${EVENT_KEY_SECRET}" --data-file=-
# Cloud Run checks secret access at deploy time: grant it before deploying.
for secret in "${AK_SECRET}" "${SK_SECRET}" "${EVENT_KEY_SECRET}"; do
  gcloud secrets add-iam-policy-binding "${secret}" \
    --member="serviceAccount:${RUNTIME_SA}" --role=roles/secretmanager.secretAccessor
done

gcloud run deploy "${SERVICE}" \
  --image="${IMAGE}" \
  --region="${REGION}" \
  --service-account="${RUNTIME_SA}" \
  --no-allow-unauthenticated \
  --concurrency=256 \
  --set-secrets="HUAWEICLOUD_SDK_AK=${AK_SECRET}:latest,HUAWEICLOUD_SDK_SK=${SK_SECRET}:latest,/var/run/secrets/reaper/event-key=${EVENT_KEY_SECRET}:latest" \
  --set-env-vars="GOOGLE_CLOUD_PROJECT=${PROJECT},CLOUDDC_ENDPOINT=${CLOUDDC_ENDPOINT},CLOUDDC_PROJECT_ID=${CLOUDDC_PROJECT_ID},REAPER_EVENT_KEY_FILE=/var/run/secrets/reaper/event-key,REAPER_INBOUND_AUTH=oidc,REAPER_OIDC_ALLOWED_EMAILS=${INVOKER_SA},REAPER_SCHEDULER=cloudtasks,REAPER_CLOUDTASKS_QUEUE=projects/${PROJECT}/locations/${REGION}/queues/${QUEUE},REAPER_CLOUDTASKS_SERVICE_ACCOUNT=${INVOKER_SA},THREADS=256"

URL="$(gcloud run services describe "${SERVICE}" --region="${REGION}" --format='value(status.url)')/"
gcloud run services update "${SERVICE}" --region="${REGION}" --update-env-vars="REAPER_SELF_URL=${URL}"

# Who may call the function: the tasks/scheduler/push identity.
gcloud run services add-iam-policy-binding "${SERVICE}" --region="${REGION}" \
  --member="serviceAccount:${INVOKER_SA}" --role=roles/run.invoker
# The runtime enqueues tasks that carry the invoker's OIDC token.
gcloud projects add-iam-policy-binding "${PROJECT}" \
  --member="serviceAccount:${RUNTIME_SA}" --role=roles/cloudtasks.enqueuer
gcloud iam service-accounts add-iam-policy-binding "${INVOKER_SA}" \
  --member="serviceAccount:${RUNTIME_SA}" --role=roles/iam.serviceAccountUser

# Sweeps every 15 minutes, as a binary CloudEvent.
gcloud scheduler jobs describe reaper-sweep --location="${REGION}" >/dev/null 2>&1 \
  || gcloud scheduler jobs create http reaper-sweep --location="${REGION}" \
       --schedule="*/15 * * * *" --uri="${URL}" --http-method=POST \
       --headers="Content-Type=application/json,ce-specversion=1.0,ce-type=instance-sweep,ce-source=/cloud-scheduler/reaper-sweep,ce-id=reaper-sweep" \
       --message-body="{\"project_id\": \"${CLOUDDC_PROJECT_ID}\"}" \
       --oidc-service-account-email="${INVOKER_SA}" --oidc-token-audience="${URL}"

# instance-expired events published to Pub/Sub are pushed to the function. Pub/Sub retries every
# non-2xx (4xx included) for up to 7 days: after 5 attempts a message goes to the dead-letter topic,
# kept by its own subscription for an operator (`gcloud pubsub subscriptions pull reaper-dead`).
DEAD_TOPIC="${TOPIC}-dead"
PUBSUB_AGENT="serviceAccount:service-$(gcloud projects describe "${PROJECT}" --format='value(projectNumber)')@gcp-sa-pubsub.iam.gserviceaccount.com"
for topic in "${TOPIC}" "${DEAD_TOPIC}"; do
  gcloud pubsub topics describe "${topic}" >/dev/null 2>&1 || gcloud pubsub topics create "${topic}"
done
gcloud pubsub subscriptions describe reaper-dead >/dev/null 2>&1 \
  || gcloud pubsub subscriptions create reaper-dead --topic="${DEAD_TOPIC}" --message-retention-duration=7d
gcloud pubsub subscriptions describe reaper-push >/dev/null 2>&1 \
  || gcloud pubsub subscriptions create reaper-push --topic="${TOPIC}" \
       --push-endpoint="${URL}" --push-auth-service-account="${INVOKER_SA}" --ack-deadline=60 \
       --dead-letter-topic="${DEAD_TOPIC}" --max-delivery-attempts=5 \
       --min-retry-delay=10s --max-retry-delay=600s
# Pub/Sub's own service agent moves messages to the dead-letter topic: it must publish there and
# acknowledge on the push subscription.
gcloud pubsub topics add-iam-policy-binding "${DEAD_TOPIC}" \
  --member="${PUBSUB_AGENT}" --role=roles/pubsub.publisher
gcloud pubsub subscriptions add-iam-policy-binding reaper-push \
  --member="${PUBSUB_AGENT}" --role=roles/pubsub.subscriber

echo "reaper is at ${URL}"
echo "try it: gcloud pubsub topics publish ${TOPIC} --message={\"instance_id\":\"i-0001\",\"project_id\":\"${CLOUDDC_PROJECT_ID}\"}"
