import { HostError } from '../errors';

/** Why an image could not be used. Each code has its own message that says what to do. */
export type ImageErrorCode =
  | 'empty' // zero bytes
  | 'not_found' // the path cannot be read (missing file, a folder, no permission)
  | 'not_an_image' // no decoder recognises the bytes
  | 'truncated' // the header reads but the pixel data is cut short or damaged
  | 'too_large' // width x height over the pixel limit (checked from the header, before decoding)
  | 'unsupported'; // a recognised format in a variant the host cannot decode

/**
 * A HostError (kind ImageTooLarge for 'too_large', ImageUnreadable otherwise) with a finer `code`, so the RPC layer can
 * treat it like any other refusal and tests can tell the cases apart.
 */
export class ImageError extends HostError {
  readonly code: ImageErrorCode;
  constructor(code: ImageErrorCode, message: string) {
    super(code === 'too_large' ? 'ImageTooLarge' : 'ImageUnreadable', message);
    this.name = 'ImageError';
    this.code = code;
  }
}
