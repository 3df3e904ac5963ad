/**
 * The root of every error this package throws. Each class carries a `code`
 * string and a `Symbol.for` brand, so `instanceof` works even when two copies
 * of the package are loaded (undici's trick).
 */
const kBrands = Symbol.for('sheepdog-client.error.brands');

type Branded = { [kBrands]?: ReadonlySet<string> };

export class SheepdogError extends Error {
  static readonly brand: string = 'SheepdogError';
  /** Stable machine-readable code, e.g. `SHEEPDOG_ERR_PROTOCOL`. */
  readonly code: string;

  constructor(message: string, code = 'SHEEPDOG_ERR', options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
    const brands = new Set<string>();
    // Collect the brand of every class in the prototype chain.
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c)) {
      const b = (c as { brand?: unknown }).brand;
      if (typeof b === 'string' && Object.hasOwn(c, 'brand')) brands.add(b);
    }
    Object.defineProperty(this, kBrands, { value: brands, enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const brands = (value as Branded)[kBrands];
    return brands instanceof Set && brands.has(this.brand);
  }
}

/**
 * Bytes that do not form a valid Sheepdog frame or record: a truncated
 * buffer, an oversize data_length, a header the caller cannot accept.
 */
export class ProtocolError extends SheepdogError {
  static override readonly brand: string = 'ProtocolError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_PROTOCOL', options);
  }
}

/** An argument that cannot be encoded (a name over 255 bytes, a field out of range). */
export class InvalidArgumentError extends SheepdogError {
  static override readonly brand: string = 'InvalidArgumentError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_INVALID_ARGUMENT', options);
  }
}
