import type net from 'node:net';
import type { Observer } from 'rxjs';

/**
 * Writes buffers to a socket. When the kernel buffer is full (`write` returns false) the
 * socket stops being read until it drains: a client that sends faster than it reads is
 * slowed down instead of growing the proxy's memory.
 */
export function toSocket(socket: net.Socket): Observer<Buffer> {
  let paused = false;
  const onDrain = (): void => {
    paused = false;
    socket.resume();
  };
  return {
    next(buf) {
      if (socket.destroyed) return;
      if (!socket.write(buf) && !paused) {
        paused = true;
        socket.pause();
        socket.once('drain', onDrain);
      }
    },
    error: () => socket.destroy(),
    complete: () => {
      if (!socket.destroyed) socket.end();
    },
  };
}
