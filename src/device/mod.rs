//! Devices on the line: the station line protocol, the serial transport, port discovery, the simulator.
