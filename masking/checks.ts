/**
 * Checksums and number-range rules that turn a shape into a detection: Luhn for cards,
 * mod-97 for IBANs, the never-issued ranges for SSNs.
 */

/** Luhn over a digit string. */
function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * A card-brand prefix with a length that brand issues, and a valid Luhn digit. The prefix
 * check keeps Luhn-valid bigint ids (one in ten of them) from being masked as cards.
 */
export function validCard(d: string): boolean {
  const n = d.length;
  if (n < 13 || n > 19) return false;
  const p2 = Number(d.slice(0, 2));
  const p4 = Number(d.slice(0, 4));
  let brand: boolean;
  switch (d[0]) {
    case '4': // Visa
      brand = n === 13 || n === 16 || n === 19;
      break;
    case '5': // Mastercard 51–55, Maestro 50/56–59
    case '6': // Discover, UnionPay, Maestro
      brand = true;
      break;
    case '3': // Amex 34/37 (15), JCB 35, Diners 30/36/38/39
      brand = p2 === 34 || p2 === 37 ? n === 15 : p2 === 35 ? n >= 16 : p2 === 30 || p2 === 36 || p2 === 38 || p2 === 39 ? n >= 14 : false;
      break;
    case '2': // Mastercard 2221–2720, Mir 2200–2204
      brand = n >= 16 && ((p4 >= 2221 && p4 <= 2720) || (p4 >= 2200 && p4 <= 2204));
      break;
    default:
      brand = false;
  }
  return brand && luhn(d);
}

/** Area 000, 666 and 900–999, group 00 and serial 0000 are never issued. */
export function validSsn(area: string, group: string, serial: string): boolean {
  return area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';
}

/** IBAN lengths by country (SWIFT IBAN registry). */
const IBAN_LENGTHS: ReadonlyMap<string, number> = new Map(
  (
    'AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29 ES24 ' +
    'FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 ' +
    'LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 ' +
    'RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30'
  )
    .split(' ')
    .map((e) => [e.slice(0, 2), Number(e.slice(2))] as const),
);

export function ibanLength(country: string): number | undefined {
  return IBAN_LENGTHS.get(country);
}

/** ISO 13616 mod-97 over the IBAN without spaces (upper-case letters and digits). */
export function validIban(iban: string): boolean {
  const r = iban.slice(4) + iban.slice(0, 4);
  let m = 0;
  for (let i = 0; i < r.length; i++) {
    const c = r.charCodeAt(i);
    m = c <= 57 ? (m * 10 + (c - 48)) % 97 : (m * 100 + (c - 55)) % 97;
  }
  return m === 1;
}
