// A canvas source that draws a frame counter, and the reader that finds it again in the
// processed video: the page's glass-to-glass latency, measured on one clock.
//
// Layout: the top two rows of square blocks. Row one: a polarity block (always white), then
// BITS bits of the counter, least significant first (white = 1). Row two repeats row one
// inverted, so a misread block is caught, and an inverted picture (a negative) still reads.

export const BITS = 15;
export const MODULO = 2 ** BITS;
const BLOCKS = BITS + 1;
const KEEP = 600; // counters remembered: 20 s at 30 fps

/** Block size in pixels for a picture `width` wide. */
export function blockSize(width) {
  return Math.max(4, Math.floor(width / BLOCKS));
}

export class CounterSource {
  constructor(width, height, fps) {
    this.canvas = document.createElement("canvas");
    this.canvas.width = width;
    this.canvas.height = height;
    this.context = this.canvas.getContext("2d");
    this.block = blockSize(width);
    this.frame = 0;
    this.sentAt = new Map(); // counter -> performance.now() when drawn
    this.stream = this.canvas.captureStream(fps);
    this.draw();
    this.timer = setInterval(() => this.draw(), 1000 / fps);
  }

  draw() {
    const { context: c, canvas, block } = this;
    const { width, height } = canvas;
    const counter = this.frame % MODULO;
    const hue = (this.frame * 2) % 360;
    const gradient = c.createLinearGradient(0, 0, width, height);
    gradient.addColorStop(0, `hsl(${hue}, 70%, 45%)`);
    gradient.addColorStop(1, `hsl(${(hue + 120) % 360}, 70%, 30%)`);
    c.fillStyle = gradient;
    c.fillRect(0, 0, width, height);
    c.fillStyle = "#fff";
    c.font = `bold ${Math.floor(height / 6)}px sans-serif`;
    c.textAlign = "center";
    c.textBaseline = "middle";
    c.fillText(String(this.frame), width / 2, height * 0.6);
    for (let i = 0; i < BLOCKS; i += 1) {
      const one = i === 0 || ((counter >> (i - 1)) & 1) === 1;
      c.fillStyle = one ? "#fff" : "#000";
      c.fillRect(i * block, 0, block, block);
      c.fillStyle = one ? "#000" : "#fff";
      c.fillRect(i * block, block, block, block);
    }
    this.sentAt.set(counter, performance.now());
    this.sentAt.delete((counter - KEEP + MODULO) % MODULO);
    this.frame += 1;
  }

  stop() {
    clearInterval(this.timer);
    for (const track of this.stream.getTracks()) track.stop();
  }
}

/** The counter in the strip of `pixels` (an ImageData of the top 2 * `block` rows) as
 *  `{value, inverted}`, or null when the strip does not read (another picture, or a workflow
 *  that moved it). `inverted`: the picture came back as its negative. */
export function readCounter(pixels, block) {
  const luma = (bx, by) => {
    // Mean luma of the middle half of one block: edges blur through the codec.
    const x0 = bx * block + Math.floor(block / 4);
    const y0 = by * block + Math.floor(block / 4);
    const size = Math.max(1, Math.floor(block / 2));
    let sum = 0;
    for (let y = y0; y < y0 + size; y += 1) {
      for (let x = x0; x < x0 + size; x += 1) {
        const i = (y * pixels.width + x) * 4;
        sum += 0.2126 * pixels.data[i] + 0.7152 * pixels.data[i + 1] + 0.0722 * pixels.data[i + 2];
      }
    }
    return sum / (size * size);
  };
  let value = 0;
  let inverted = false;
  for (let i = 0; i < BLOCKS; i += 1) {
    const top = luma(i, 0);
    const bottom = luma(i, 1);
    if (Math.abs(top - bottom) < 96) return null; // not a clean block pair
    const one = top > bottom;
    if (i === 0) inverted = !one;
    else if (one !== inverted) value |= 1 << (i - 1);
  }
  return { value, inverted };
}
