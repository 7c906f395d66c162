// The official Node service SDK (azure-iot-provisioning-service 1.11.2) against the emulator.
// Plain HTTP over the emulator's Unix socket (a `host` object is the SDK's only plain-HTTP path).
// Prints one JSON line per step; tests/dps_emulator/official_clients.rs checks them.
// Works around two SDK bugs (REFERENCE.md §10.7): bulk in callback form, and passing the
// continuation token to query.next() explicitly.
'use strict';
const fs = require('fs');
const path = require('path');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { SharedAccessSignature, anHourFromNow } = require('azure-iot-common');

const socketPath = process.env.DPS_SOCKET;
const host = process.env.DPS_HOST;
const key = process.env.DPS_KEY;
const syncDir = process.env.DPS_SYNC_DIR;

function client(withKey) {
  const sas = SharedAccessSignature.create(host, 'provisioningserviceowner', withKey, anHourFromNow());
  return new ProvisioningServiceClient({ host: { socketPath }, sharedAccessSignature: sas });
}
const svc = client(key);
const out = (step, fields) => console.log(JSON.stringify(Object.assign({ step }, fields)));
const statusOf = (err) => (err && err.response && err.response.statusCode) || (err && err.message) || 'no error';
const bulk = (op) => new Promise((resolve, reject) =>
  svc.runBulkEnrollmentOperation(op, (err, result) => (err ? reject(err) : resolve(result))));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function pages(query) {
  const sizes = [];
  const ids = new Set();
  let res = await query.next();
  for (let i = 0; i < 20; i++) {
    sizes.push(res.responseBody.length);
    res.responseBody.forEach((e) => ids.add(e.registrationId || e.enrollmentGroupId));
    if (!query.hasMoreResults) break;
    res = await query.next(query.continuationToken);
  }
  return { sizes, ids };
}

async function main() {
  const enrollment = { registrationId: 'official-1', attestation: { type: 'symmetricKey' } };
  const created = (await svc.createOrUpdateIndividualEnrollment(enrollment)).responseBody;
  out('create', { etag_present: typeof created.etag === 'string' && created.etag.length > 0 });

  try {
    await svc.createOrUpdateIndividualEnrollment({ registrationId: 'official-1', attestation: { type: 'symmetricKey' } });
    out('create_again', { status: 200 });
  } catch (err) {
    out('create_again', { status: statusOf(err) });
  }

  const got = (await svc.getIndividualEnrollment('official-1')).responseBody;
  out('get', { registrationId: got.registrationId, has_keys: !!(got.attestation.symmetricKey && got.attestation.symmetricKey.primaryKey) });

  got.provisioningStatus = 'disabled';
  const updated = (await svc.createOrUpdateIndividualEnrollment(got)).responseBody;
  out('update', { provisioningStatus: updated.provisioningStatus });
  try {
    await svc.createOrUpdateIndividualEnrollment(got); // still carries the old etag
    out('update_stale_etag', { status: 200 });
  } catch (err) {
    out('update_stale_etag', { status: statusOf(err) });
  }

  const att = (await svc.getIndividualEnrollmentAttestationMechanism('official-1')).responseBody;
  out('attestation', { primary_key_bytes: Buffer.from(att.symmetricKey.primaryKey, 'base64').length });

  await svc.deleteIndividualEnrollment('official-1', updated.etag);
  out('delete', { ok: true });
  try {
    await svc.getIndividualEnrollment('official-1');
    out('get_deleted', { status: 200 });
  } catch (err) {
    out('get_deleted', { status: statusOf(err) });
  }

  const batch = [];
  for (let i = 0; i < 12; i++) batch.push({ registrationId: `official-bulk-${String(i).padStart(2, '0')}`, attestation: { type: 'none' } });
  let ok = true;
  for (let i = 0; i < batch.length; i += 10) {
    const r = await bulk({ mode: 'create', enrollments: batch.slice(i, i + 10) });
    ok = ok && r.isSuccessful;
  }
  out('bulk_create', { isSuccessful: ok });
  const again = await bulk({ mode: 'create', enrollments: batch.slice(0, 2) });
  out('bulk_again', { isSuccessful: again.isSuccessful, first_error_code: again.errors && again.errors[0].errorCode });

  const q = await pages(svc.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 4));
  out('query', { pages: q.sizes, unique: q.ids.size });

  const group = (await svc.createOrUpdateEnrollmentGroup({ enrollmentGroupId: 'official-group', attestation: { type: 'symmetricKey' } })).responseBody;
  out('group_create', { enrollmentGroupId: group.enrollmentGroupId });
  const gatt = (await svc.getEnrollmentGroupAttestationMechanism('official-group')).responseBody;
  out('group_attestation', { primary_key_bytes: Buffer.from(gatt.symmetricKey.primaryKey, 'base64').length });
  const gq = await pages(svc.createEnrollmentGroupQuery({ query: 'SELECT * FROM enrollmentGroups' }));
  out('group_query', { count: gq.ids.size });

  // A device registers through the group (the Rust side does it, through the device API).
  fs.writeFileSync(path.join(syncDir, 'group-created'), 'ok');
  for (let i = 0; i < 200 && !fs.existsSync(path.join(syncDir, 'member-registered')); i++) await sleep(50);
  const state = (await svc.getDeviceRegistrationState('official-member-1')).responseBody;
  out('registration_get', { status: state.status });
  const rq = svc.createEnrollmentGroupDeviceRegistrationStateQuery({ query: 'SELECT * FROM enrollments' }, 'official-group');
  const rres = await rq.next();
  out('registration_query', { count: rres.responseBody.length });
  await svc.deleteDeviceRegistrationState('official-member-1');
  out('registration_delete', { ok: true });
  await svc.deleteEnrollmentGroup('official-group');

  try {
    await client(Buffer.from('not the key of this instance').toString('base64')).getIndividualEnrollment('official-bulk-00');
    out('wrong_key', { status: 200 });
  } catch (err) {
    out('wrong_key', { status: statusOf(err) });
  }
}

main().catch((err) => {
  console.error('node client failed:', err && err.stack ? err.stack : err);
  process.exit(1);
});
