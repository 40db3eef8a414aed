// componentize-js 0.23.0 lifts every WIT string argument with the bindings' shared
// `new TextDecoder()`, whose default (ignoreBOM: false) drops a leading U+FEFF: the
// policy would see "\uFEFF> accept" as "> accept", which Rust's policy does not.
// The bindings call `decode` through the prototype at call time, so making UTF-8
// decoders keep the mark here restores the exact string. Import this module first.

const { decode } = TextDecoder.prototype;
const keepBom = new TextDecoder('utf-8', { ignoreBOM: true });

TextDecoder.prototype.decode = function (input, options) {
  const exact = this.encoding === 'utf-8' && !this.ignoreBOM && !options?.stream;
  return decode.call(exact ? keepBom : this, input, options);
};
