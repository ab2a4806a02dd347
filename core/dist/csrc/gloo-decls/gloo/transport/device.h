// Fallback declarations (see README.md): devices and buffers appear only behind smart pointers.
#pragma once
namespace gloo::transport {
class Device;
class UnboundBuffer;
}  // namespace gloo::transport
