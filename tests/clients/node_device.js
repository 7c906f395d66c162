// The official Node device SDK's MQTT transports against the emulator, unchanged:
// azure-iot-provisioning-device-mqtt registers (X.509 or symmetric key), then azure-iot-device-mqtt
// connects to the assigned hub, reads the twin, patches reported properties and sends ten messages.
// Trust comes from NODE_EXTRA_CA_CERTS (the emulator's CA). Prints one JSON line per step;
// tests/dps_emulator/mqtt_clients.rs checks them.
'use strict';

const fs = require('fs');
const ProvisioningTransport = require('azure-iot-provisioning-device-mqtt').Mqtt;
const ProvisioningDeviceClient = require('azure-iot-provisioning-device').ProvisioningDeviceClient;
const X509Security = require('azure-iot-security-x509').X509Security;
const SymmetricKeySecurityClient = require('azure-iot-security-symmetric-key').SymmetricKeySecurityClient;
const HubTransport = require('azure-iot-device-mqtt').Mqtt;
const { Client, Message } = require('azure-iot-device');

const host = process.env.DPS_HOST;
const scope = process.env.ID_SCOPE;
const registrationId = process.env.REGISTRATION_ID;
const x509 = process.env.X509_CERT_FILE
  ? { cert: fs.readFileSync(process.env.X509_CERT_FILE, 'utf8'), key: fs.readFileSync(process.env.X509_KEY_FILE, 'utf8') }
  : null;
const symmetricKey = process.env.SYMMETRIC_KEY;

function out(step, fields) {
  console.log(JSON.stringify(Object.assign({ step }, fields)));
}

function fail(what, err) {
  console.error(what + ': ' + (err && (err.stack || err.message || err)));
  process.exit(1);
}

const security = x509 ? new X509Security(registrationId, x509) : new SymmetricKeySecurityClient(registrationId, symmetricKey);
const provisioning = ProvisioningDeviceClient.create(host, scope, new ProvisioningTransport(), security);

provisioning.register((err, result) => {
  if (err) return fail('register', err);
  out('register', { status: result.status, assigned_hub: result.assignedHub, device_id: result.deviceId });
  const connectionString = 'HostName=' + result.assignedHub + ';DeviceId=' + result.deviceId +
    (x509 ? ';x509=true' : ';SharedAccessKey=' + symmetricKey);
  const client = Client.fromConnectionString(connectionString, HubTransport);
  if (x509) client.setOptions(x509);
  client.open((err) => {
    if (err) return fail('open', err);
    out('connect', { connected: true });
    client.getTwin((err, twin) => {
      if (err) return fail('twin', err);
      out('twin', { desired: twin.properties.desired });
      twin.properties.reported.update({ sample: 'node', firmware: { version: '2.0.0' } }, (err) => {
        if (err) return fail('patch', err);
        out('patch', { ok: true });
        let sent = 0;
        const sendNext = () => {
          if (sent === 10) {
            out('telemetry', { sent });
            return client.close(() => process.exit(0));
          }
          sent += 1;
          const msg = new Message('node wind speed ' + sent);
          msg.messageId = 'node-' + sent;
          msg.properties.add('count', String(sent));
          client.sendEvent(msg, (err) => (err ? fail('send', err) : sendNext()));
        };
        sendNext();
      });
    });
  });
});
