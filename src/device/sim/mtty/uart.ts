/**
 * The per-port UART state of the mtty sample (`struct serial_port` in samples/vfio-mdev/mtty.c)
 * as it sits in the migration image: 36 bytes on x86-64 (vfio-uapi.md §9.1), and the register
 * semantics of its handle_bar_write()/handle_bar_read() minus interrupts.
 */

/** `sizeof(struct serial_port)`: uart_reg[8], rxtx {fifo[16], head, tail, count}, dlab,
 * overrun, (pad), u16 divisor, fcr, max_fifo_size, intr_trigger_level, (pad). */
export const PORT_SIZE = 36;
export const MAX_FIFO_SIZE = 16;

/** Byte offsets inside one port record. */
export const PortField = {
  UART_REG: 0,
  FIFO: 8,
  HEAD: 24,
  TAIL: 25,
  COUNT: 26,
  DLAB: 27,
  OVERRUN: 28,
  PAD0: 29,
  DIVISOR: 30,
  FCR: 32,
  MAX_FIFO_SIZE: 33,
  INTR_TRIGGER_LEVEL: 34,
  PAD1: 35,
} as const;

/** UART register offsets (linux/serial_reg.h). */
export const UartReg = { TX: 0, IER: 1, FCR: 2, LCR: 3, MCR: 4, LSR: 5, MSR: 6, SCR: 7 } as const;

const UART_FCR_ENABLE_FIFO = 0x01;
const UART_FCR_CLEAR_RCVR = 0x02;
const UART_FCR_CLEAR_XMIT = 0x04;
const UART_LCR_DLAB = 0x80;
const UART_LSR_DR = 0x01;
const UART_LSR_OE = 0x02;
const UART_LSR_THRE = 0x20;
const UART_LSR_TEMT = 0x40;

const F = PortField;

/** A guest write to register `reg` of the port stored in `p` (36 bytes). */
export function uartWrite(p: Uint8Array, reg: number, data: number): void {
  data &= 0xff;
  switch (reg) {
    case UartReg.TX:
      if (p[F.DLAB]) {
        setDivisor(p, divisor(p) | data);
        break;
      }
      if (p[F.COUNT]! < p[F.MAX_FIFO_SIZE]!) {
        p[F.FIFO + p[F.HEAD]!] = data;
        p[F.COUNT]!++;
        p[F.HEAD] = (p[F.HEAD]! + 1) & (MAX_FIFO_SIZE - 1);
        p[F.OVERRUN] = 0;
      } else {
        p[F.OVERRUN] = 1;
      }
      break;
    case UartReg.IER:
      if (p[F.DLAB]) setDivisor(p, divisor(p) | (data << 8));
      else p[F.UART_REG + reg] = data;
      break;
    case UartReg.FCR:
      p[F.FCR] = data;
      if (data & (UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT)) {
        p[F.COUNT] = 0;
        p[F.HEAD] = 0;
        p[F.TAIL] = 0;
      }
      // mtty computes a trigger level from the FCR and then always overwrites it with 1.
      p[F.INTR_TRIGGER_LEVEL] = 1;
      p[F.MAX_FIFO_SIZE] = data & UART_FCR_ENABLE_FIFO ? MAX_FIFO_SIZE : 1;
      break;
    case UartReg.LCR:
      if (data & UART_LCR_DLAB) {
        p[F.DLAB] = 1;
        setDivisor(p, 0);
      } else {
        p[F.DLAB] = 0;
      }
      p[F.UART_REG + reg] = data;
      break;
    case UartReg.MCR:
    case UartReg.SCR:
      p[F.UART_REG + reg] = data;
      break;
    default: // LSR, MSR: read-only
      break;
  }
}

/** A guest read of register `reg` (reading RX pops the loopback FIFO). */
export function uartRead(p: Uint8Array, reg: number): number {
  switch (reg) {
    case UartReg.TX: {
      if (p[F.DLAB]) return divisor(p) & 0xff;
      let data = 0;
      // Like mtty, a full FIFO (head == tail, count 16) reads as empty.
      if (p[F.HEAD] !== p[F.TAIL]) {
        data = p[F.FIFO + p[F.TAIL]!]!;
        p[F.COUNT]!--;
        p[F.TAIL] = (p[F.TAIL]! + 1) & (MAX_FIFO_SIZE - 1);
      }
      return data;
    }
    case UartReg.IER:
      return p[F.DLAB] ? divisor(p) >>> 8 : p[F.UART_REG + reg]! & 0x0f;
    case UartReg.LSR: {
      let lsr = 0;
      if (p[F.HEAD] !== p[F.TAIL]) lsr |= UART_LSR_DR;
      else lsr |= UART_LSR_TEMT | UART_LSR_THRE;
      if (p[F.OVERRUN]) lsr |= UART_LSR_OE;
      return lsr;
    }
    default:
      return p[F.UART_REG + reg] ?? 0;
  }
}

function divisor(p: Uint8Array): number {
  return p[F.DIVISOR]! | (p[F.DIVISOR + 1]! << 8);
}

function setDivisor(p: Uint8Array, v: number): void {
  p[F.DIVISOR] = v & 0xff;
  p[F.DIVISOR + 1] = (v >>> 8) & 0xff;
}

/**
 * Plausibility of a port record received in a resume stream: null when it could have been
 * produced by mtty's own register handling, else what is wrong.
 *
 * Checked: FIFO indices and count are in range and agree with each other; dlab and overrun are
 * booleans; dlab matches LCR bit 7; max_fifo_size and intr_trigger_level hold values mtty can
 * produce and max_fifo_size matches FCR bit 0; padding is zero.
 * Still slips through (any value is one mtty could hold): the FIFO contents, the IER, MCR,
 * SCR and FCR register values, and the divisor — a corrupted byte there loads silently, as
 * it would with the kernel sample.
 */
export function checkPortRecord(p: Uint8Array): string | null {
  const head = p[F.HEAD]!;
  const tail = p[F.TAIL]!;
  const count = p[F.COUNT]!;
  if (head >= MAX_FIFO_SIZE || tail >= MAX_FIFO_SIZE)
    return `fifo head ${head} / tail ${tail} >= 16`;
  if (count > MAX_FIFO_SIZE) return `fifo count ${count} > 16`;
  if (((tail + count) & (MAX_FIFO_SIZE - 1)) !== head) {
    return `fifo count ${count} does not match head ${head} and tail ${tail}`;
  }
  if (p[F.DLAB]! > 1 || p[F.OVERRUN]! > 1) return 'dlab/overrun are not booleans';
  if (p[F.DLAB] !== (p[F.UART_REG + UartReg.LCR]! & UART_LCR_DLAB ? 1 : 0)) {
    return 'dlab disagrees with LCR bit 7';
  }
  const max = p[F.MAX_FIFO_SIZE]!;
  const fcr = p[F.FCR]!;
  // 0 until the guest first writes FCR (the port is zero-initialised), then 1 or 16.
  if (max === 0 ? fcr !== 0 : max !== (fcr & UART_FCR_ENABLE_FIFO ? MAX_FIFO_SIZE : 1)) {
    return `max_fifo_size ${max} does not match FCR 0x${fcr.toString(16)}`;
  }
  if (![0, 1, 4, 8, 14].includes(p[F.INTR_TRIGGER_LEVEL]!)) {
    return `intr_trigger_level ${p[F.INTR_TRIGGER_LEVEL]} is not 0, 1, 4, 8 or 14`;
  }
  if (p[F.PAD0] !== 0 || p[F.PAD1] !== 0) return 'padding bytes are not zero';
  return null;
}
