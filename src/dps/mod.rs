//! Azure IoT Hub Device Provisioning Service: the service API client, enrollment files, the emulator.

pub mod emulator;
